/* Instructions per softbits_encode call, for benchmarks/device_icount.py. Reads up to
   MAX_ROWS float32 rows of input.f32 into RAM, then reads the SysTick counter (which QEMU
   drives from its virtual clock: one nanosecond per instruction under -icount shift=0) around
   three loops: a calibration loop of a known instruction count, PASSES passes calling
   softbits_encode on every row, and the same passes calling an empty function of the same
   signature (nop.c, a separate file so that it is not inlined). Prints one line:
   "calibration_instructions calibration_ticks calls encode_ticks empty_ticks". */
#include <stdio.h>
#include "softbits_encoder.h"

#define MAX_ROWS 64
#define PASSES 100
#define CALIBRATION_LOOPS 1000000UL /* two instructions each: subs, bne */
#define EXIT_IO 2

#define SYST_CSR (*(volatile uint32_t *)0xE000E010UL)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014UL)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018UL)
#define SYST_MASK 0xFFFFFFUL /* a 24-bit down-counter */

typedef void (*encoder_fn)(const float *x, uint8_t *out);

void softbits_bench_empty(const float *x, uint8_t *out);

static float rows[MAX_ROWS][SOFTBITS_N_FEATURES];
static uint8_t packed[SOFTBITS_PAYLOAD_BYTES];

static uint32_t elapsed_since(uint32_t start)
{
    return (start - SYST_CVR) & SYST_MASK;
}

__attribute__((noinline)) static uint32_t calibration_ticks(uint32_t loops)
{
    const uint32_t start = SYST_CVR;
    __asm__ volatile("1:\n\tsubs %0, %0, #1\n\tbne 1b" : "+r"(loops) : : "cc");
    return elapsed_since(start);
}

/* Both timed loops run this same code; only the function called differs. */
__attribute__((noinline)) static uint32_t encode_ticks(encoder_fn fn, unsigned n_rows)
{
    const uint32_t start = SYST_CVR;
    unsigned pass;
    unsigned i;
    for (pass = 0; pass < PASSES; ++pass) {
        for (i = 0; i < n_rows; ++i) {
            fn(rows[i], packed);
        }
    }
    return elapsed_since(start);
}

int main(void)
{
    unsigned n_rows;
    uint32_t calibration;
    uint32_t encode;
    uint32_t empty;
    FILE *in = fopen("input.f32", "rb");
    if (in == NULL) {
        return EXIT_IO;
    }
    n_rows = (unsigned)fread(rows, sizeof rows[0], MAX_ROWS, in);
    fclose(in);
    if (n_rows == 0) {
        return EXIT_IO;
    }
    SYST_RVR = SYST_MASK;
    SYST_CVR = 0;           /* any write reloads the counter */
    SYST_CSR = 0x5UL;       /* enabled, counting processor clocks, no interrupt */
    calibration = calibration_ticks(CALIBRATION_LOOPS);
    encode = encode_ticks(softbits_encode, n_rows);
    empty = encode_ticks(softbits_bench_empty, n_rows);
    printf("%lu %lu %lu %lu %lu\n", 2UL * CALIBRATION_LOOPS, (unsigned long)calibration,
           (unsigned long)n_rows * PASSES, (unsigned long)encode, (unsigned long)empty);
    return 0;
}
