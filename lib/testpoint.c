/* lib/testpoint.h: no hook unless a test build installs one. */
#include "lib/testpoint.h"

void (*testpoint_hook)(const char *point);
