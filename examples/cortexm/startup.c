/* Minimal Cortex-M startup for QEMU's mps2-an386 / mps3-an547: vector table,
   .data copy, .bss clear, FPU enable, then main(); its return value becomes
   QEMU's exit code through ARM semihosting (SYS_EXIT_EXTENDED). A fault also
   exits (code 70) instead of hanging. No C library needed; with -DCM_NEWLIB
   it sets up newlib's semihosting stdio (link with --specs=rdimon.specs). */
#include <stdint.h>
#include "semihost.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
#ifdef CM_NEWLIB
int main(int argc, char **argv);
#else
int main(void);
#endif
void Reset_Handler(void);
void Fault_Handler(void);

__attribute__((section(".vectors"), used))
static const void *const vectors[16] = {
    &__stack_top, (const void *)Reset_Handler, (const void *)Fault_Handler,
    (const void *)Fault_Handler, (const void *)Fault_Handler, (const void *)Fault_Handler,
    (const void *)Fault_Handler,
};

void Fault_Handler(void) { semihost_exit(70); }

void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end) *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;   /* CPACR: CP10, CP11 full access */
    __asm volatile("dsb\n\tisb");
#endif
#ifdef CM_NEWLIB
    {   /* newlib's semihosting stdio (librdimon), and main's arguments from
           QEMU's -semihosting-config ...,arg=prog,arg=...  (SYS_GET_CMDLINE) */
        extern void initialise_monitor_handles(void);
        static char cmd[512], *argv[32];
        uint32_t block[2];
        int argc = 0;
        char *p = cmd;
        initialise_monitor_handles();
        block[0] = (uint32_t)(uintptr_t)cmd;
        block[1] = sizeof cmd - 1;
        if (semihost_call(0x15, block) != 0) cmd[0] = '\0';
        while (*p && argc < 31) {
            while (*p == ' ') *p++ = '\0';
            if (!*p) break;
            argv[argc++] = p;
            while (*p && *p != ' ') p++;
        }
        argv[argc] = 0;
        semihost_exit(main(argc, argv));
    }
#else
    semihost_exit(main());
#endif
}

#ifndef CM_NEWLIB
/* The compiler may emit calls to these for struct copies and zeroing. */
void *memcpy(void *d, const void *s, unsigned n);
void *memset(void *d, int v, unsigned n);
void *memcpy(void *d, const void *s, unsigned n)
{
    unsigned char *a = (unsigned char *)d;
    const unsigned char *b = (const unsigned char *)s;
    while (n--) *a++ = *b++;
    return d;
}
void *memset(void *d, int v, unsigned n)
{
    unsigned char *a = (unsigned char *)d;
    while (n--) *a++ = (unsigned char)v;
    return d;
}
#endif
