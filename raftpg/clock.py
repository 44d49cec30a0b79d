"""The one clock leases are judged on (DESIGN rule 3).

CLOCK_BOOTTIME keeps counting while the host is suspended, which time.monotonic() does not;
a lease must never look younger than it is.
"""

import time


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)
