"""Data: the embedded WordNet-labelled image set, the Broden-format probe and readers.

Readers (:mod:`consis_lib.data.imagefolder`, :mod:`consis_lib.data.broden`) serve the
embedded sets and the real ImageNet / Broden folders alike. Submodules are imported
explicitly; this package imports nothing heavy.
"""
