/* Test double for gem5's m5 utility (CI has no gem5), named as such: records
 * each call on the console. `readfile` hands over a script that ends the login
 * shell, as a careless benchmark script would, so the boot test can see that a
 * second login takes no second checkpoint. A static x86-64 executable, as
 * hackback requires of any m5: tests/conftest.py (m5_standin) compiles it in
 * the tools image with `gcc -static`. */
#include <stdio.h>
#include <string.h>

static const char script[] =
    "#!/bin/sh\n"
    "echo \"stand-in script ran\"\n"
    "kill -HUP \"$(ps -o ppid= -p \"$PPID\" | tr -d ' ')\"\n"
    "exit 3\n";

int main(int argc, char **argv)
{
    fputs("HACKBACK-M5-STANDIN ", stderr);
    for (int i = 1; i < argc; i++)
        fprintf(stderr, i > 1 ? " %s" : "%s", argv[i]);
    fputc('\n', stderr);
    if (argc > 1 && strcmp(argv[1], "readfile") == 0)
        fputs(script, stdout);
    return 0;
}
