"""Python functions as container payloads: run a function in a fresh container, get its result back.

Results and exceptions come back in a format that cannot run code in the
caller (:mod:`nsprim.call.wire`), read by :mod:`nsprim.call.answer`.
"""
