# A tiny test harness for device-side scripts: MicroPython has no pytest, so each script
# registers cases with @case and calls run(), which prints one line per case:
#   PASS <name>            or            FAIL <name>: <detail>
# followed by "DONE <cases> <failed>". tests/test_device_cases.py runs every script once
# per interpreter and turns each line into a pytest result.
import sys

CASES = []


class Fail(Exception):
    pass


class FakeClock:
    """Fake time for the policy and the client (no sleeping in tests): sleep_ms() advances
    it and is recorded in .slept; wall_time() is Unix seconds, `wall` at the start."""

    def __init__(self, t=1000000, wall=1700000000):
        self.t0 = self.t = t
        self.wall = wall
        self.slept = []

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, b):
        return a + b

    def sleep_ms(self, ms):
        self.slept.append(ms)
        self.t += ms

    def wall_time(self):
        return self.wall + (self.t - self.t0) // 1000


def case(name):
    def deco(fn):
        CASES.append((name, fn))
        return fn
    return deco


def table(prefix, rows, check):
    """Register one case per row: name = prefix + row[0], body = check(*row[1:])."""
    for row in rows:
        case(prefix + row[0])(_bind(check, row[1:]))


def _bind(fn, args):
    return lambda: fn(*args)


def eq(got, want, what=""):
    if got != want:
        raise Fail("%s%r != %r (expected)" % (what + ": " if what else "", got, want))


def ok(cond, what):
    if not cond:
        raise Fail(what)


def raises(cls, fn, *args, **kw):
    """Call fn; it must raise cls (or a subclass). -> the exception."""
    try:
        fn(*args, **kw)
    except cls as e:
        return e
    except Exception as e:
        raise Fail("expected %s, got %s: %s" % (cls.__name__, type(e).__name__, e))
    raise Fail("expected %s, nothing was raised" % cls.__name__)


def _print_tb(e):
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)  # MicroPython
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__)


def run():
    failed = 0
    for name, fn in CASES:
        try:
            fn()
            print("PASS " + name)
        except Exception as e:
            failed += 1
            detail = "%s: %s" % (type(e).__name__, e) if not isinstance(e, Fail) else str(e)
            print("FAIL %s: %s" % (name, detail.replace("\n", " | ")))
            if not isinstance(e, Fail):
                sys.stderr.write("--- traceback of %s\n" % name)
                _print_tb(e)
    print("DONE %d %d" % (len(CASES), failed))
