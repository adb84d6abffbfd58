/* A stand-in for the Arduino core, for building a package's example sketch off the board:
   Serial reads samples from input.f32 and writes frames to compact.bin (files of the host,
   through semihosting on the emulated boards). Only what the example uses. */
#ifndef SOFTBITS_TEST_ARDUINO_H
#define SOFTBITS_TEST_ARDUINO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

class SerialPort {
public:
    void begin(unsigned long baud)
    {
        (void)baud;
        in_ = fopen("input.f32", "rb");
        out_ = fopen("compact.bin", "wb");
        done = in_ == NULL || out_ == NULL;
    }
    size_t readBytes(char *buffer, size_t length)
    {
        size_t got = in_ != NULL ? fread(buffer, 1, length, in_) : 0;
        if (got < length) {
            done = true;
        }
        return got;
    }
    size_t write(const uint8_t *buffer, size_t length)
    {
        return out_ != NULL ? fwrite(buffer, 1, length, out_) : 0;
    }
    int end()
    {
        int failed = (in_ != NULL && fclose(in_) != 0) || out_ == NULL || fclose(out_) != 0;
        in_ = out_ = NULL;
        return failed;
    }
    bool done = false;

private:
    FILE *in_ = NULL;
    FILE *out_ = NULL;
};

extern SerialPort Serial;

#endif
