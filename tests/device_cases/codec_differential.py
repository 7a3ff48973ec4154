# Differential fuzzing, device side: parse every input of fuzz_inputs.jsonl with httpcodec
# and write one outcome per line to fuzz_results.jsonl (tests/test_fuzz.py compares them
# with CPython's). Streams line by line, so the batch size does not matter for the heap.
# Not a casekit script: it reports outcomes, not pass/fail.
import io
import json
import binascii
from vmmaker import httpcodec
from vmmaker.errors import ProtocolError

n = 0
with open("fuzz_inputs.jsonl") as src, open("fuzz_results.jsonl", "w") as dst:
    for line in src:
        method, cap, b64 = json.loads(line)
        raw = binascii.a2b_base64(b64)
        try:
            s, h, b = httpcodec.read_response(io.BytesIO(raw), method, cap)
            res = ["ok", s, h, binascii.hexlify(b).decode()]
        except ProtocolError as e:
            res = ["err", type(e).__name__]
        except Exception as e:
            res = ["crash", type(e).__name__, str(e)]
        dst.write(json.dumps(res) + "\n")
        n += 1
print("DONE %d" % n)
