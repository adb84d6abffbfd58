/* Encode every float32 row of input.f32 with the generated softbits_encode and write one wire
   payload (header, sample count, packed samples) to output.bin: the bytes
   `softbits encode MODEL --format bin` writes for the same rows. Each row also goes through
   softbits_encode_compact, its compact frames one after the other into compact.bin. The files
   are the host's, reached through semihosting, relative to the directory QEMU runs in. */
#include <stdio.h>
#include "softbits_encoder.h"

#define EXIT_IO 2       /* a file could not be opened, read or written */
#define EXIT_ROWS 4     /* the input is not whole rows, or more than a payload holds */
#define MAX_SAMPLES 0xFFFFL

int main(void)
{
    float x[SOFTBITS_N_FEATURES];
    uint8_t packed[SOFTBITS_PAYLOAD_BYTES];
    uint8_t frame[SOFTBITS_COMPACT_BYTES];
    uint8_t count[2];
    long size;
    long n_rows;
    long i;
    FILE *in = fopen("input.f32", "rb");
    FILE *out = fopen("output.bin", "wb");
    FILE *compact = fopen("compact.bin", "wb");
    if (in == NULL || out == NULL || compact == NULL || fseek(in, 0, SEEK_END) != 0 || (size = ftell(in)) < 0
        || fseek(in, 0, SEEK_SET) != 0) {
        return EXIT_IO;
    }
    n_rows = size / (long)sizeof x;
    if (size % (long)sizeof x != 0 || n_rows < 1 || n_rows > MAX_SAMPLES) {
        return EXIT_ROWS;
    }
    count[0] = (uint8_t)(n_rows & 0xFF);
    count[1] = (uint8_t)(n_rows >> 8);
    if (fwrite(softbits_header_prefix, 1, sizeof softbits_header_prefix, out) != sizeof softbits_header_prefix
        || fwrite(count, 1, sizeof count, out) != sizeof count) {
        return EXIT_IO;
    }
    for (i = 0; i < n_rows; ++i) {
        if (fread(x, sizeof x[0], SOFTBITS_N_FEATURES, in) != SOFTBITS_N_FEATURES) {
            return EXIT_IO;
        }
        softbits_encode(x, packed);
        softbits_encode_compact(x, frame);
        if (fwrite(packed, 1, sizeof packed, out) != sizeof packed
            || fwrite(frame, 1, sizeof frame, compact) != sizeof frame) {
            return EXIT_IO;
        }
    }
    return fclose(compact) == 0 && fclose(out) == 0 && fclose(in) == 0 ? 0 : EXIT_IO;
}
