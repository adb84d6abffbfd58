/* Bare-metal start for the emulated Cortex-M boards, in place of the toolchain's crt0:
   the vector table, and a reset handler that sets up C's memory, the FPU and semihosting
   before main. Exit codes reach the host through semihosting as QEMU's exit status. */
#include <stdint.h>
#include <stdlib.h>

#define EXIT_FAULT 3 /* a fault in the firmware, told apart from main's own exit codes */

extern uint32_t __stack_top;
extern uint32_t __data_start, __data_end, __data_load, __bss_start, __bss_end;

extern int main(void);
extern void initialise_monitor_handles(void);

void reset_handler(void);
static void fault_handler(void);

/* The initial stack pointer, then the reset handler and the 14 system exceptions; the boards'
   interrupts stay disabled, so no entries follow. */
struct vector_table {
    uint32_t *initial_sp;
    void (*handlers[15])(void);
};

__attribute__((section(".vectors"), used))
static const struct vector_table vectors = {
    &__stack_top,
    {
        reset_handler,
        fault_handler, /* NMI */
        fault_handler, /* HardFault */
        fault_handler, /* MemManage */
        fault_handler, /* BusFault */
        fault_handler, /* UsageFault */
        0, 0, 0, 0,    /* reserved */
        fault_handler, /* SVCall */
        fault_handler, /* DebugMonitor */
        0,             /* reserved */
        fault_handler, /* PendSV */
        fault_handler, /* SysTick */
    },
};

static void fault_handler(void)
{
    exit(EXIT_FAULT);
}

void reset_handler(void)
{
    const uint32_t *src = &__data_load;
    uint32_t *dst;
    for (dst = &__data_start; dst < &__data_end; ++dst) {
        *dst = *src++;
    }
    for (dst = &__bss_start; dst < &__bss_end; ++dst) {
        *dst = 0;
    }
#if defined(__ARM_FP)
    /* Hard-float build: grant full access to coprocessors 10 and 11 (the FPU) in CPACR
       before the first floating-point instruction. */
    *(volatile uint32_t *)0xE000ED88UL |= 0xFUL << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    initialise_monitor_handles();
    exit(main());
}
