"""Attention layers: Attention, AdditiveAttention, MultiHeadAttention, Dot."""
