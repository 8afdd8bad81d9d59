// Minimal host stand-in for the Arduino core, so lamp_firmware.ino can be compiled and run on a PC:
//   g++ -std=c++17 -I contrib/lamp_firmware/host -x c++ contrib/lamp_firmware/lamp_firmware.ino
//       -x none contrib/lamp_firmware/host/main.cpp -o /tmp/lamp_firmware      (one command line)
// Serial reads stdin and writes stdout; pins are recorded for the final "PINS" line printed by main.cpp.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#define HIGH 1
#define LOW 0
#define OUTPUT 1

extern int host_pins[64];

inline void pinMode(uint8_t, uint8_t) {}
inline void digitalWrite(uint8_t pin, uint8_t value) { host_pins[pin] = value; }
inline unsigned long millis() {
  using namespace std::chrono;
  static const auto start = steady_clock::now();
  return (unsigned long)duration_cast<milliseconds>(steady_clock::now() - start).count();
}

struct HostSerial {
  std::string pending;
  void begin(unsigned long) {}
  int available() {
    if (pending.empty()) {
      int c = std::getchar();
      if (c == EOF) return 0;
      pending.push_back((char)c);
    }
    return (int)pending.size();
  }
  int read() {
    if (pending.empty() && !available()) return -1;
    char c = pending.front();
    pending.erase(0, 1);
    return (unsigned char)c;
  }
  void print(const char *s) { std::fputs(s, stdout); std::fflush(stdout); }
  void print(char c) { std::putchar(c); std::fflush(stdout); }
  void print(int n) { std::printf("%d", n); std::fflush(stdout); }
  void print(unsigned n) { std::printf("%u", n); std::fflush(stdout); }
};
extern HostSerial Serial;
