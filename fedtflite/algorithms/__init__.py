"""Pure algorithms: client sampling, weighted means, SCAFFOLD's control variates.

Arrays in, arrays out: no I/O, no Flower, no globals.
"""
