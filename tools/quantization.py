"""A 4-bit token embedding and LM head for models loaded in 4-bit.

transformers' bitsandbytes integration quantises the Linear layers of the decoder but keeps the
token embedding and the LM head in the compute dtype. In PaliGemma (Gemma) the two are one tied
257216 x 2048 table: 1 GiB in bf16, about half of everything a 4-bit PaliGemma-3B keeps
resident. ``quantize_embeddings_4bit`` replaces that table with one NF4 copy (blocks of 64
values along each row, as bitsandbytes' Linear4bit) that both modules read:

- the embedding dequantises only the rows it looks up;
- the head multiplies by the 4-bit table directly where bitsandbytes has a fused kernel for it
  (its AVX512-BF16 CPU kernel, which wants the table in its own packed layout; that layout is
  what we store on such CPUs), and elsewhere dequantises a chunk of rows at a time, so a
  forward pass never holds the whole table in bf16.

The logits then carry 4-bit rounding too: on trained Gemma 3 270M / SmolLM2-135M heads that
costs +14% / +21% perplexity over a 4-bit body alone (benchmarks/quantization.py), so this is
opt-in: ``[vision] bnb_4bit_embeddings = true``. Memory figures: benchmarks/vision.py --full-size.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

# This module is imported only where a 4-bit model is being loaded, so torch is already there.
import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)

BLOCKSIZE = 64  # values per absmax scale
CHUNK_ROWS = 16384  # rows quantised / dequantised at a time: 64 MiB of bf16 at width 2048
PACK_ROWS = 32  # bitsandbytes' CPU layout interleaves rows in groups of 32


def _cpu_kernel_available() -> bool:
    """bitsandbytes' fused 4-bit CPU kernel and its weight layout (not in older releases)."""
    try:
        from bitsandbytes.functional import (
            _convert_weight_packed_for_cpu,  # noqa: F401
            has_avx512bf16,
        )
    except ImportError:
        return False
    return bool(has_avx512bf16())


class Table4bit(nn.Module):
    """A (rows, dim) matrix as 4-bit codes with one scale per block of 64 values of a row.

    ``cpu_packed`` stores it in the layout of bitsandbytes' fused CPU kernel (default: on a CPU
    that has the kernel); otherwise in bitsandbytes' ordinary row-major layout.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        quant_type: str = "nf4",
        dtype: torch.dtype | None = None,
        cpu_packed: bool | None = None,
    ) -> None:
        super().__init__()
        rows, dim = weight.shape
        self.rows, self.dim, self.quant_type = rows, dim, quant_type
        self.dtype = dtype or weight.dtype
        if cpu_packed is None:
            cpu_packed = weight.device.type == "cpu" and _cpu_kernel_available()
        self.cpu_packed = bool(cpu_packed) and rows % PACK_ROWS == 0
        if self.cpu_packed and not self._fill(weight):
            log.warning(
                "bitsandbytes' CPU weight layout is not the one litevlm reads; the 4-bit LM head "
                "falls back to the row-major layout (slower on CPU)"
            )
            self.cpu_packed = False
        if not self.cpu_packed:
            self._fill(weight)

    def _fill(self, weight: torch.Tensor) -> bool:
        """Quantise ``weight`` into the buffers, a chunk of rows at a time (all 527M values at
        once need several GiB of temporaries); both layouts keep a chunk's bytes contiguous.
        Packed: False if the first chunk does not read back as bitsandbytes dequantises it."""
        from bitsandbytes.functional import dequantize_4bit, quantize_4bit

        rows, dim, blocks = self.rows, self.dim, self.dim // BLOCKSIZE
        dev = weight.device
        self.register_buffer("codes", torch.empty(rows * dim // 2, dtype=torch.uint8, device=dev))
        if self.cpu_packed:
            self.register_buffer(
                "absmax", torch.empty(blocks, rows, dtype=torch.bfloat16, device=dev)
            )
        else:
            self.register_buffer("absmax", torch.empty(rows * blocks, device=dev))
        for start in range(0, rows, CHUNK_ROWS):
            stop = min(rows, start + CHUNK_ROWS)
            q, state = quantize_4bit(
                weight[start:stop].contiguous(),
                blocksize=BLOCKSIZE,
                compress_statistics=False,
                quant_type=self.quant_type,
            )
            if start == 0:
                self.register_buffer("code", state.code)  # the 16 NF4 levels, same for every chunk
            if self.cpu_packed:
                from bitsandbytes.functional import _convert_weight_packed_for_cpu

                expected = dequantize_4bit(q, state)[:PACK_ROWS] if start == 0 else None
                q, state = _convert_weight_packed_for_cpu(q, state)
                self.absmax[:, start:stop] = state.absmax
            else:
                self.absmax[start * blocks : stop * blocks] = state.absmax
            self.codes[start * dim // 2 : stop * dim // 2] = q.view(torch.uint8).reshape(-1)
            if start == 0 and self.cpu_packed:
                got = self._lookup_packed(torch.arange(PACK_ROWS, device=dev))
                if not torch.allclose(got, expected.float(), rtol=1e-2, atol=1e-2):
                    return False
        return True

    def _state(self, absmax: torch.Tensor, n_rows: int) -> Any:
        from bitsandbytes.functional import QuantState

        return QuantState(
            absmax=absmax,
            shape=torch.Size((n_rows, self.dim)),
            code=self.code,
            blocksize=BLOCKSIZE,
            quant_type=self.quant_type,
            dtype=torch.bfloat16 if self.cpu_packed else self.dtype,
        )

    def rows_between(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` in the compute dtype."""
        if self.cpu_packed:
            return self.lookup(torch.arange(start, stop, device=self.codes.device))
        from bitsandbytes.functional import dequantize_4bit

        half, blocks = self.dim // 2, self.dim // BLOCKSIZE
        state = self._state(self.absmax[start * blocks : stop * blocks], stop - start)
        return dequantize_4bit(self.codes[start * half : stop * half].reshape(-1, 1), state)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows at ``ids`` (any shape) in the compute dtype, shaped ``(*ids.shape, dim)``."""
        flat = ids.reshape(-1)
        if self.cpu_packed:
            return self._lookup_packed(flat).to(self.dtype).view(*ids.shape, self.dim)
        from bitsandbytes.functional import dequantize_4bit

        codes = F.embedding(flat, self.codes.view(self.rows, self.dim // 2))
        absmax = F.embedding(flat, self.absmax.view(self.rows, self.dim // BLOCKSIZE))
        out = dequantize_4bit(codes.reshape(-1, 1), self._state(absmax.reshape(-1), flat.numel()))
        return out.view(*ids.shape, self.dim)

    def _lookup_packed(self, ids: torch.Tensor) -> torch.Tensor:
        # bitsandbytes' CPU layout (functional._convert_weight_packed_for_cpu): the codes of
        # rows 32g..32g+31 are stored as [column pair p][32 bytes]; row 32g+i, columns 2p and
        # 2p+1, sit in byte 2(i mod 16) and 2(i mod 16)+1 of that run, in the low nibble for
        # i < 16 and the high one otherwise. Scales are stored transposed, (dim / 64, rows).
        packed = self.codes.view(self.rows // PACK_ROWS, self.dim // 2, PACK_ROWS)
        group, i = ids // PACK_ROWS, ids % PACK_ROWS
        pair = torch.arange(self.dim // 2, device=ids.device)
        byte = 2 * (i % 16)[:, None, None] + torch.arange(2, device=ids.device)
        b = packed[group[:, None, None], pair[None, :, None], byte].reshape(len(ids), self.dim)
        nibble = torch.where((i < 16)[:, None], b & 0xF, b >> 4).long()
        scale = self.absmax[:, ids].T.float().repeat_interleave(BLOCKSIZE, dim=1)
        return self.code.float()[nibble] * scale

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ table.T`` (a bias-free linear layer with this table as its weight)."""
        if self.cpu_packed and x.device.type == "cpu":
            from bitsandbytes import matmul_4bit

            state = self._state(self.absmax, self.rows)
            state.packing_format_for_cpu = True
            return matmul_4bit(x.to(torch.bfloat16), self.codes, quant_state=state).to(self.dtype)
        x = x.to(self.dtype)
        return torch.cat(
            [
                F.linear(x, self.rows_between(s, min(self.rows, s + CHUNK_ROWS)))
                for s in range(0, self.rows, CHUNK_ROWS)
            ],
            dim=-1,
        )


class Embedding4bit(nn.Module):
    """Token embedding reading a Table4bit (keeps Gemma's ``embed_scale``)."""

    def __init__(self, table: Table4bit, embed_scale: Any = None, padding_idx: Any = None) -> None:
        super().__init__()
        self.table = table
        self.num_embeddings, self.embedding_dim = table.rows, table.dim
        self.padding_idx = padding_idx
        if embed_scale is not None:
            self.register_buffer("embed_scale", embed_scale.detach().clone(), persistent=False)
        else:
            self.embed_scale = None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.table.lookup(input_ids)
        if self.embed_scale is not None:
            out = out * self.embed_scale.to(out.dtype)
        return out


class LMHead4bit(nn.Module):
    """Output projection reading a Table4bit (shared with the embedding when they are tied)."""

    def __init__(self, table: Table4bit) -> None:
        super().__init__()
        self.table = table
        self.in_features, self.out_features = table.dim, table.rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table.matmul(x)


def quantize_embeddings_4bit(
    model: Any, quant_type: str = "nf4", dtype: torch.dtype | None = None
) -> bool:
    """Swap ``model``'s token embedding and LM head for 4-bit ones; one table when tied.

    Returns False (model unchanged) where the layout does not allow it: no plain embedding, or
    a width that is not a multiple of the 64-value block. A head with a bias stays as it is.
    """
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if not isinstance(emb, nn.Embedding) or emb.weight.shape[1] % BLOCKSIZE:
        log.info("token embedding left unquantised: not an nn.Embedding of a width n x 64")
        return False
    head_ok = isinstance(head, nn.Linear) and head.bias is None
    tied = head_ok and head.weight.data_ptr() == emb.weight.data_ptr()
    dtype = dtype or emb.weight.dtype
    table = Table4bit(emb.weight.data, quant_type, dtype)
    model.set_input_embeddings(
        Embedding4bit(table, getattr(emb, "embed_scale", None), emb.padding_idx)
    )
    if head_ok:
        head_table = table if tied else Table4bit(head.weight.data, quant_type, dtype)
        model.set_output_embeddings(LMHead4bit(head_table))
    # transformers would re-tie the modules by parameter name; the new ones have no weight.
    for config in (model.config, getattr(model.config, "text_config", None)):
        if config is not None:
            config.tie_word_embeddings = False
    del emb, head
    gc.collect()
    return True
