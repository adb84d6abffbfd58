/* The empty function bench.c times in place of softbits_encode, to subtract the cost of the
   loop and the call itself. */
#include <stdint.h>

void softbits_bench_empty(const float *x, uint8_t *out);

void softbits_bench_empty(const float *x, uint8_t *out)
{
    (void)x;
    (void)out;
}
