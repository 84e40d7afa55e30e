/* ARM semihosting (QEMU -semihosting-config enable=on,target=native): text
   output to the host's stdout and exit with a code. */
#ifndef SEMIHOST_H
#define SEMIHOST_H
#include <stdint.h>

static inline uint32_t semihost_call(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static inline void semihost_puts(const char *s) { semihost_call(0x04, s); }   /* SYS_WRITE0 */

static inline void semihost_exit(int code)
{
    uint32_t block[2];
    block[0] = 0x20026u;                 /* ADP_Stopped_ApplicationExit */
    block[1] = (uint32_t)code;
    for (;;) semihost_call(0x20, block); /* SYS_EXIT_EXTENDED */
}
#endif
