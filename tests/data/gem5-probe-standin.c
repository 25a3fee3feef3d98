/* Test double for a gem5 binary (named as such, never gem5): an x86-64 ELF that
 * answers hackback's probe (configs/hackback_probe.py) as a gem5 of another ISA
 * or another release would. tests/test_env.py compiles it in the tools image
 * with -DRELEASE="..." -DISA="...". */
#include <stdio.h>

int main(void)
{
    printf("gem5 version %s (test double)\n", RELEASE);
    printf("HACKBACK-PROBE {\"isas\": [\"%s\"], \"protocol\": \"\", \"release\": \"%s\", "
           "\"version_tags\": [\"cpu-pid\"]}\n", ISA, RELEASE);
    return 0;
}
