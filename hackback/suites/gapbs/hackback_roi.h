// hackback's region-of-interest markers for GAPBS (roi.patch calls them around
// each trial's kernel). In the gem5 build they are m5 workbegin/workend made the
// way hackback-guest and gem5-resources' NPB hooks make them: a load from the m5
// page of /dev/mem at 0xFFFF0000 + (op << 8), arguments in rdi and rsi (gem5's
// util/m5/src/abi/x86/m5op_addr.S, include/gem5/asm/generic/m5ops.h). Built
// with -DHACKBACK_ROI_NATIVE they toggle callgrind's collection at the same
// places instead, so a native run under `valgrind --tool=callgrind
// --collect-atstart=no` counts the region of interest alone.
#ifndef HACKBACK_ROI_H_
#define HACKBACK_ROI_H_

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#ifdef HACKBACK_ROI_NATIVE
#include <valgrind/callgrind.h>
#endif

namespace hackback_roi {

const std::uint64_t kWorkBegin = 0x5a, kWorkEnd = 0x5b;  // M5OP_WORK_BEGIN, M5OP_WORK_END

inline volatile std::uint8_t *m5_page() {
  static volatile std::uint8_t *page = nullptr;
  if (page == nullptr) {
    int fd = open("/dev/mem", O_RDWR | O_SYNC);
    if (fd < 0) {
      std::perror("hackback ROI: cannot open /dev/mem for m5 calls");
      std::exit(1);
    }
    void *p = mmap(nullptr, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0xFFFF0000);
    close(fd);
    if (p == MAP_FAILED) {
      std::perror("hackback ROI: cannot map the m5 page");
      std::exit(1);
    }
    page = static_cast<volatile std::uint8_t *>(p);
  }
  return page;
}

inline void m5op(std::uint64_t op) {
  volatile std::uint8_t *at = m5_page() + (op << 8);
  std::uint64_t rax;
  __asm__ __volatile__("mov (%[at]), %%rax" : "=a"(rax) : [at] "r"(at), "D"(0UL), "S"(0UL) : "memory");
  (void)rax;
}

}  // namespace hackback_roi

inline void hackback_roi_begin() {
  std::printf("HACKBACK-ROI begin\n");
  std::fflush(stdout);
#ifdef HACKBACK_ROI_NATIVE
  CALLGRIND_TOGGLE_COLLECT;
#else
  hackback_roi::m5_page();  // mapped before the region starts
  hackback_roi::m5op(hackback_roi::kWorkBegin);
#endif
}

inline void hackback_roi_end() {
#ifdef HACKBACK_ROI_NATIVE
  CALLGRIND_TOGGLE_COLLECT;
#else
  hackback_roi::m5op(hackback_roi::kWorkEnd);
#endif
  std::printf("HACKBACK-ROI end\n");
}

#endif  // HACKBACK_ROI_H_
