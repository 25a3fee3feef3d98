# What a gem5 binary is, asked of the binary itself (hackback runs this when
# `invoke env` is handed a gem5 built elsewhere, and after its own builds):
#
#   gem5.opt --outdir=OUT hackback_probe.py
#
# prints one line `HACKBACK-PROBE {json}`: the release, the ISAs it simulates,
# its Ruby protocol, and the checkpoint version tags compiled into it. In gem5
# v24.0.0.1 `--build-info` crashes, and the version tags exist only inside the
# binary, so the probe writes a checkpoint of an empty system and reads its
# `version_tags` back.
import configparser
import json
import os
import sys

import m5
import m5.defines
from m5.objects import Root


def release() -> str:
    try:
        import _m5.core

        return str(_m5.core.gem5Version)
    except (ImportError, AttributeError):
        return ""


def main() -> int:
    build = m5.defines.buildEnv
    isas = sorted(k[len("USE_"):-len("_ISA")].lower() for k, v in build.items()
                  if k.startswith("USE_") and k.endswith("_ISA") and v)
    root = Root(full_system=False)  # noqa: F841 (instantiate() finds it)
    m5.instantiate()
    cpt = os.path.join(m5.options.outdir, "probe-cpt")
    m5.checkpoint(cpt)
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(os.path.join(cpt, "m5.cpt"))
    # v24 writes them under [root.globals]; older releases under [Globals].
    section = next((s for s in ("root.globals", "Globals") if ini.has_section(s)), "root.globals")
    tags = ini.get(section, "version_tags", fallback="").split()
    info = {"release": release(), "isas": isas, "protocol": str(build.get("PROTOCOL", "") or ""),
            "version_tags": sorted(tags)}
    print("HACKBACK-PROBE " + json.dumps(info, sort_keys=True), flush=True)
    return 0


if __name__ == "__m5_main__":
    sys.exit(main())
