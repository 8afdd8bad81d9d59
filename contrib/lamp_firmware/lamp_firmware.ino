// Lamp firmware for the "ascii" lamp driver of the remote consultation counter (kiosk lamp).
//
// Protocol (docs/devices.md, "ascii line protocol"): 9600 baud 8N1, one command per line, LF-terminated (a CR
// before the LF is ignored). Every command is answered with one line:
//   "OK <command>"            done (the command echoed exactly as received, without CR/LF)
//   "ERR <reason> <command>"  refused: reason CHANNEL (no such output) or UNKNOWN (not a command)
// Commands: ON n | OFF n | BLINK n | ALLOFF | PING      (n = 1-based output number)
// At boot every output is off and the board prints "READY <outputs>".
// Watchdog: with no line for WATCHDOG_MS every output goes off (the PC or its agent died; a lamp must not show a
// call that nobody is watching). The agent sends PING every few seconds while idle, so this never fires normally.
//
// Tested shape: Arduino Uno/Nano/Pro Micro driving a relay module or transistor stages for a signal tower.
// An Uno resets when the port is opened; the agent keeps sending PING for up to 3 s until this sketch answers.

#include <Arduino.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

// -- wiring ---------------------------------------------------------------------------------------------------
const uint8_t OUTPUT_PINS[] = {2, 3, 4, 5, 6, 7, 8, 9};  // output 1 is pin 2, output 2 is pin 3, ...
const bool ACTIVE_HIGH = false;          // most relay modules switch on a LOW input; set true for MOSFET stages
const unsigned long BAUD = 9600;
const unsigned long BLINK_HALF_MS = 500; // 1 Hz blinking
const unsigned long WATCHDOG_MS = 30000;

// -- state ----------------------------------------------------------------------------------------------------
const uint8_t OUTPUTS = sizeof(OUTPUT_PINS) / sizeof(OUTPUT_PINS[0]);
enum Mode : uint8_t { MODE_OFF, MODE_ON, MODE_BLINK };
Mode modes[OUTPUTS];

const uint8_t MAX_LINE = 64;             // longer lines are noise: dropped up to the next newline
char line[MAX_LINE + 1];
uint8_t lineLen = 0;
bool discarding = false;
unsigned long lastLineMs = 0;

void drive(uint8_t i, bool lit) {
  digitalWrite(OUTPUT_PINS[i], (lit == ACTIVE_HIGH) ? HIGH : LOW);
}

void allOff() {
  for (uint8_t i = 0; i < OUTPUTS; i++) {
    modes[i] = MODE_OFF;
    drive(i, false);
  }
}

void refresh() {
  bool phaseOn = (millis() / BLINK_HALF_MS) % 2 == 0;
  for (uint8_t i = 0; i < OUTPUTS; i++) {
    drive(i, modes[i] == MODE_ON || (modes[i] == MODE_BLINK && phaseOn));
  }
}

void reply(const char *status, const char *reason, const char *command) {
  Serial.print(status);
  if (reason) {
    Serial.print(' ');
    Serial.print(reason);
  }
  Serial.print(' ');
  Serial.print(command);
  Serial.print('\n');
}

// Returns the 0-based output for a channel argument, or -1.
int parseChannel(const char *arg) {
  if (!arg || !*arg) return -1;
  for (const char *p = arg; *p; p++) {
    if (!isdigit((unsigned char)*p)) return -1;
  }
  long n = atol(arg);
  return (n >= 1 && n <= OUTPUTS) ? (int)(n - 1) : -1;
}

void handle(char *text) {
  // Trim surrounding spaces; keep the text for the echo.
  while (*text == ' ') text++;
  size_t len = strlen(text);
  while (len && text[len - 1] == ' ') text[--len] = '\0';
  if (!len) return;

  char op[8] = {0};
  const char *arg = strchr(text, ' ');
  size_t opLen = arg ? (size_t)(arg - text) : len;
  if (opLen >= sizeof(op)) {
    reply("ERR", "UNKNOWN", text);
    return;
  }
  for (size_t i = 0; i < opLen; i++) op[i] = toupper((unsigned char)text[i]);
  if (arg) {
    while (*arg == ' ') arg++;
  }

  if (!arg && strcmp(op, "PING") == 0) {
    reply("OK", NULL, text);
  } else if (!arg && strcmp(op, "ALLOFF") == 0) {
    allOff();
    reply("OK", NULL, text);
  } else if (arg && (strcmp(op, "ON") == 0 || strcmp(op, "OFF") == 0 || strcmp(op, "BLINK") == 0)) {
    int i = parseChannel(arg);
    if (i < 0) {
      reply("ERR", "CHANNEL", text);
      return;
    }
    modes[i] = op[1] == 'N' ? MODE_ON : (op[0] == 'B' ? MODE_BLINK : MODE_OFF);
    refresh();
    reply("OK", NULL, text);
  } else {
    reply("ERR", "UNKNOWN", text);
  }
}

void setup() {
  for (uint8_t i = 0; i < OUTPUTS; i++) pinMode(OUTPUT_PINS[i], OUTPUT);
  allOff();
  Serial.begin(BAUD);
  Serial.print("READY ");
  Serial.print(OUTPUTS);
  Serial.print('\n');
  lastLineMs = millis();
}

void loop() {
  while (Serial.available() > 0) {
    char c = (char)Serial.read();
    if (c == '\n') {
      if (!discarding) {
        if (lineLen && line[lineLen - 1] == '\r') lineLen--;
        line[lineLen] = '\0';
        handle(line);
      }
      lineLen = 0;
      discarding = false;
      lastLineMs = millis();
    } else if (!discarding) {
      if (lineLen < MAX_LINE) {
        line[lineLen++] = c;
      } else {
        lineLen = 0;
        discarding = true;
      }
    }
  }
  if (millis() - lastLineMs > WATCHDOG_MS) {
    allOff();
    lastLineMs = millis();
  }
  refresh();
}
