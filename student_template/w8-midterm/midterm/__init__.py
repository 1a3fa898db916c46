"""midterm: a Transformer from scratch, and what the report notebook needs to train and evaluate it."""

from midterm.data import SPECIALS, build_vocab, detokenize, encode, pad_batch, tokenize
from midterm.metrics import corpus_bleu
from midterm.model import (BOS, EOS, PAD, UNK, Decoder, DecoderLayer, Encoder, EncoderLayer, MultiHeadAttention,
                           PositionwiseFeedForward, Transformer, length_penalty, make_src_mask, make_tgt_mask,
                           sequence_loss, shift_targets, sinusoidal_table)

NORM_FIRST = False  # post-LN, as in the paper (True: pre-LN)

__all__ = ["BOS", "EOS", "PAD", "UNK", "SPECIALS", "NORM_FIRST", "tokenize", "build_vocab", "encode", "detokenize",
           "pad_batch", "corpus_bleu", "sinusoidal_table", "make_src_mask", "make_tgt_mask", "shift_targets",
           "sequence_loss", "length_penalty", "MultiHeadAttention", "PositionwiseFeedForward", "EncoderLayer",
           "DecoderLayer", "Encoder", "Decoder", "Transformer"]
