"""Seeds of fuzz_avro for the fuzzing-only writer schemas in tests/fuzz/schemas
(ids 100 and 101, registered by fuzz_avro.c). Run from the repository root
with Debian's python3 (python3-avro):
    /usr/bin/python3 tests/fuzz/mkcorpus_evolved.py
Each file: one byte choosing the stream, then the Confluent-framed message."""

import io
import json
import os

import avro.io
import avro.schema

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "avro")
T = 1767139200000  # 2025-12-31T00:00:00Z, a day before the targets' "now"


def schema(name):
    with open(os.path.join(HERE, "schemas", name)) as f:
        return avro.schema.parse(f.read())


def write(fname, stream, sid, sch, rec):
    buf = io.BytesIO()
    avro.io.DatumWriter(sch).write(rec, avro.io.BinaryEncoder(buf))
    data = bytes([stream]) + b"\x00" + sid.to_bytes(4, "big") + buf.getvalue()
    with open(os.path.join(OUT, fname), "wb") as f:
        f.write(data)


inner = {"a": 7, "b": True, "c": [{"k": b"abcd"}, {}]}
every = schema("clickstream_every_type.avsc")
base = {"session_id": "s-1", "x_bytes": b"\x00\xff", "type": "PAGE_VIEW", "x_fixed": b"1234",
        "event_time": T, "x_float": 1.5, "x_double": -2.25, "customer_id": "c-1",
        "x_array": ["a", "bb"], "x_map": {"m": 5, "n": None}, "x_record": inner,
        "channel": "web", "x_union": None, "device": "mobile", "country": "PL", "event_id": "e-1"}
variants = [
    {},
    {"type": "WISHLIST", "x_union": "str"},                       # a symbol the reader lacks
    {"type": "ADD_TO_CART", "x_union": 12345, "x_array": []},
    {"event_time": None, "x_union": [1, -2, 3]},                  # null for a required field
    {"channel": None, "x_union": inner, "x_map": {}},
    {"type": "REMOVE_FROM_CART", "session_id": "", "x_bytes": b""},
]
for i, v in enumerate(variants):
    rec = dict(base, **v)
    write(f"evolved-clickstream-{i}", 0, 100, every, rec)

noamt = schema("checkout_no_amount.avsc")
write("evolved-checkout-no-amount", 1, 101, noamt,
      {"event_id": "e-2", "event_time": T, "type": "ORDER_PLACED", "order_id": "o-1",
       "session_id": "s-1", "currency": "EUR", "item_count": 2, "payment_method": "card",
       "channel": "web", "device": "desktop", "country": "DE"})
print(json.dumps({"written": len(variants) + 1, "dir": OUT}))
