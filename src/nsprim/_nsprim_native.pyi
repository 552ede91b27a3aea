# The compiled cffi extension; typed once, as a Protocol, in nsprim._sys._lib.
from typing import Any

ffi: Any
lib: Any
