"""Shared I/O: everything that reads or writes the project's files, and the errors it reports.

    errors.py     the error types (what a user can fix, with its exit code)
    paths.py      where conf/, assets/ and the shipped models are (a checkout or an installed wheel)
    images.py     decoding and encoding images: EXIF, modes, animations, size limits, listing folders
    files.py      atomic writes, the guard that no output lands on an input, file hashes
    paintings.py  painting records: bundled names, files, credits, finding the file again
    export.py     the .safetensors export format (kind, paintings, objective, model card)
    validate.py   the config checks every command runs before any slow work
    version.py    the package version, recorded in every export

May import: nothing of fast_nst outside this package. Everything else imports it.
"""
