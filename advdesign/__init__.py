"""advdesign: gradient-based design on adversarially robust surrogates.

The packages ``designers``, ``tasks`` and ``flows`` hold the work; this one holds the command line and the
embedded defaults that let everything run with no server started by hand.
"""
