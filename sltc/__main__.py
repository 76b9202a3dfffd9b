"""``python -m sltc`` (and ``torchrun -m sltc``): the command line."""

from .cli import main

main()
