"""``nsprim-runtime``: an OCI runtime on nsprim's primitives, with runc's command line.

:mod:`~nsprim.oci.runtime.cli` parses the command line and dispatches,
:mod:`~nsprim.oci.runtime.store` keeps the containers' state under
``--root``, :mod:`~nsprim.oci.runtime.commands` implements the commands that
work on recorded containers, :mod:`~nsprim.oci.runtime.features` the
``features`` document.  How ``create`` and ``start`` are to be built is in
``docs/runtime.rst`` ("Design: create and start").

Nothing is imported here: every call of the runtime imports this package,
and each command imports only what it needs.
"""
