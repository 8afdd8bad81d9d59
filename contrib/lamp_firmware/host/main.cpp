// Runs the lamp sketch on a PC against stdin/stdout until stdin ends, then prints "PINS <pin>=<level> ...".
#include "Arduino.h"

int host_pins[64];
HostSerial Serial;

void setup();
void loop();

int main() {
  for (int &p : host_pins) p = -1;
  setup();
  while (!std::feof(stdin)) loop();
  loop();
  std::printf("PINS");
  for (int i = 0; i < 64; i++) {
    if (host_pins[i] >= 0) std::printf(" %d=%d", i, host_pins[i]);
  }
  std::printf("\n");
  return 0;
}
