"""Training data: photo folders, COCO or the bundled set, in an order that resumes exactly.

    decode.py     one photo to one crop (header checked first; PIL or torchvision.io), unusable files
    sampler.py    the seeded, resumable, DDP-sharded sampler and loader
    photos.py     `PhotoDataModule`: the folders, the validation set, the loaders
    paintings.py  `PhotoPaintingDataModule`: photos paired with painting crops (any-painting kinds)
    report.py     the report of the unusable photos the loader skipped

May import: fast_nst.io.
"""
