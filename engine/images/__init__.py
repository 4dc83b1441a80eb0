"""Content-addressed images: the store (store.py), the safe layer extractor (unpack.py), references,
manifests, and the archive formats images travel in.

The runtime's entry points: `ImageStore(root).resolve(ref)` gives an `Image`, whose `layer_dirs()` are the
overlayfs lowerdirs (top first) and `runtime_config` the Env/Cmd/... defaults; `ImageStore.commit` turns a
container's changes into a new image.
"""
