/* hackback's ROI hooks for a native run of NPB (outside gem5): the same two
 * functions as common/hooks.c, which print and toggle callgrind's collection
 * where gem5's m5 workbegin/workend would be, so `valgrind --tool=callgrind
 * --collect-atstart=no` counts the region of interest alone. No /dev/mem. */
#include <stdio.h>
#include <valgrind/callgrind.h>

void roi_begin_()
{
    printf(" -------------------- ROI BEGIN -------------------- \n");
    CALLGRIND_TOGGLE_COLLECT; /* where the gem5 build calls m5_work_begin */
}

void roi_end_()
{
    printf(" -------------------- ROI END -------------------- \n");
    CALLGRIND_TOGGLE_COLLECT; /* where the gem5 build calls m5_work_end */
}
