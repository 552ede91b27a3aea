"""Build glue: setuptools compiles the cffi extension nsprim._nsprim_native from _native/."""

from setuptools import setup

setup(cffi_modules=["_native/build_ffi.py:ffibuilder"])
