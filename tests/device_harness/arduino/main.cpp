// Runs an Arduino sketch off the board: setup() once, then loop() until Serial has no more input.
#include "Arduino.h"

SerialPort Serial;

void setup();
void loop();

int main()
{
    setup();
    while (!Serial.done) {
        loop();
    }
    return Serial.end() == 0 ? 0 : 2;
}
