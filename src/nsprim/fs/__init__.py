"""The union file system: mounts, the mount table, overlay, root file systems and image layers.

* :mod:`nsprim.fs.mount` — mount, bind, tmpfs, remount, propagation, in the caller's namespace;
* :mod:`nsprim.fs.mountinfo` — the mount table (``/proc/<pid>/mountinfo``), the one parser;
* :mod:`nsprim.fs.overlay` — :class:`~nsprim.fs.overlay.OverlayMount`: copy-on-write layers;
* :mod:`nsprim.fs.rootfs` — :class:`~nsprim.fs.rootfs.RootFS`: a new root, set up in a child;
* :mod:`nsprim.fs.steps` — the plan steps that act inside a new root;
* :mod:`nsprim.fs.layers` — OCI layer tars, their safe extraction, commit, the layer store.
"""
