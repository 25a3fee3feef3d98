"""What the steps are made of: the tools image, gem5's build and run, QEMU, the kernel, payloads, stats, Slurm, the suites' and sampling's own logic."""
