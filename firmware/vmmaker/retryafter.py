# Retry-After: delay-seconds or an HTTP-date (RFC 9110 10.2.3), without time.mktime,
# whose epoch and time-zone handling differ between ports.
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _days_from_civil(y, m, d):
    # Howard Hinnant's algorithm: days since 1970-01-01 in the proleptic Gregorian calendar.
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def http_date(value):
    """'Sun, 06 Nov 1994 08:49:37 GMT' -> Unix seconds, or None if not that form."""
    p = value.replace(",", " ").split()
    if len(p) != 6 or p[5].upper() != "GMT":
        return None
    try:
        d, mon, y = int(p[1]), _MONTHS.index(p[2].lower()) + 1, int(p[3])
        hh, mm, ss = [int(x) for x in p[4].split(":")]
    except ValueError:
        return None
    if not (1 <= d <= 31 and 0 <= hh < 24 and 0 <= mm < 60 and 0 <= ss < 61):
        return None
    return _days_from_civil(y, mon, d) * 86400 + hh * 3600 + mm * 60 + ss


def parse(value, now_unix):
    """Seconds to wait, or None when the header is absent or malformed."""
    if value is None:
        return None
    v = value.strip(" \t")  # not str.strip(): its whitespace set differs by port
    if v and not v.strip("0123456789"):  # ASCII digits only: "-1", "+1", "1.0" are rejected
        return int(v)
    t = http_date(v)
    if t is None:
        return None
    return max(0, t - int(now_unix))
