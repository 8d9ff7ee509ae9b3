"""Recurrent core: cells, TF1-style dropout wrapper, length-aware recurrence, encoder."""

from models.rnn.cells import CELLS, get_cell, register_cell
from models.rnn.dropout import DropoutMasks, DropoutWrapper
from models.rnn.encoder import SequenceEncoder
