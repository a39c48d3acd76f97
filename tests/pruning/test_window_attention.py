"""Swin (torchvision v1 and v2) pruned by whole window-attention heads: same outputs, per-head tables, replay."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_replays

from moprune.measure import count_complexity
from moprune.pruning import apply_plan, discover_groups, find_sites, prunable_form
from moprune.pruning.window_attention import WindowHeadAttention
from moprune.train.models import build_model

X = torch.randn(2, 3, 32, 32)
# 2-px patches make 16x16 maps; 4x4 windows with a shift of 2 in every second block, so the shifted path and its
# mask run; a patch merging halves the map for the second stage.
SMALL = {"patch_size": 2, "embed_dim": 32, "depths": [2, 2], "num_heads": [2, 4], "window_size": 4}
ATTN = "features.1.1.attn"  # a shifted block of the first stage
ATTN2 = "features.3.0.attn"  # the second stage's first block


def tiny_swin(arch: str, prunable: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(arch, 10, SMALL).eval()
    if prunable:
        prunable_form(model)
    return model


@pytest.mark.parametrize("arch", ["swin_t", "swin_v2_t"])
def test_prunable_form_keeps_the_outputs_of_torchvisions_window_attention(arch):
    model = tiny_swin(arch, prunable=False)
    with torch.no_grad():
        model.features[1][1].attn.relative_position_bias_table.normal_() if arch == "swin_t" else None
        before = model(X)
    assert model.features[1][1].attn.shift_size == [2, 2], "the test must cover the shifted windows"
    assert prunable_form(model) == 4
    assert all(isinstance(m, WindowHeadAttention) for m in (model.get_submodule(ATTN), model.get_submodule(ATTN2)))
    torch.testing.assert_close(model(X), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["swin_t", "swin_v2_t"])
def test_heads_removed_take_their_position_bias_with_them_and_the_model_runs(arch):
    model = tiny_swin(arch)
    dense_attn = model.get_submodule(ATTN2)
    groups = discover_groups(model, X[:1])
    assert [(g.root, g.kind, g.channels) for g in groups][:2] == [
        ("features.1.0.attn", "heads", 2), ("features.1.0.mlp", "neurons", 128)]
    pruned = apply_plan(model, {ATTN2: 0.5, ATTN: 0.5, "features.3.0.mlp": 0.5}, X[:1])
    attn = pruned.model.get_submodule(ATTN2)
    assert (attn.num_heads, attn.head_dim) == (2, 16), "whole heads go; the head size stays"
    assert attn.q.out_features == attn.k.out_features == attn.v.out_features == attn.proj.in_features == 32
    kept = pruned.history[[h["site"] for h in pruned.history].index(ATTN2)]["keep"]
    if arch == "swin_t":
        assert torch.equal(attn.relative_position_bias_table, dense_attn.relative_position_bias_table[:, kept])
    else:
        assert torch.equal(attn.logit_scale, dense_attn.logit_scale[kept])
        assert torch.equal(attn.cpb_mlp[2].weight, dense_attn.cpb_mlp[2].weight[kept])
    assert pruned.model.get_submodule("features.3.0.mlp.0").out_features == 128
    assert pruned.model(X).shape == (2, 10)
    pruned.model.train()(X).sum().backward()  # and it fine-tunes


def test_a_pruned_swin_replays_from_its_json_history_to_identical_outputs():
    model = tiny_swin("swin_t")
    plan = {g.root: r for g, r in zip(discover_groups(model, X[:1]), (0.5, 0.25, 0.0, 0.5, 0.75, 0.3))}
    assert_replays(lambda: tiny_swin("swin_t"), apply_plan(model, plan, X[:1]), X)


def test_window_attention_macs_count_every_windows_products_and_fall_with_the_heads():
    model = tiny_swin("swin_t")
    # stage 1: 16x16 map, 16 windows of 16 tokens, 2 heads of 16; stage 2: 8x8, 4 windows, 4 heads of 16
    products = 2 * (2 * 2 * 16 * 16 ** 2 * 16) + 2 * (2 * 4 * 4 * 16 ** 2 * 16)
    qkv_proj = 2 * 256 * 4 * 32 * 32 + 2 * 64 * 4 * 64 * 64  # q, k, v and proj, per token
    dense = count_complexity(model, X)
    assert dense.macs >= products + qkv_proj
    pruned = apply_plan(model, {ATTN: 0.5}, X[:1]).model
    saved = 2 * 16 * 16 ** 2 * 16 + 256 * 4 * 32 * 16  # one head's products and projections in one block
    biases = 3 * 16  # Torch-Pruning's counter adds a Linear's bias once per call
    assert dense.macs - count_complexity(pruned, X).macs == saved + biases


def test_swin_kwargs_take_ints_or_pairs_and_v2_keeps_its_blocks():
    from torchvision.models.swin_transformer import SwinTransformerBlockV2

    model = build_model("swin_v2_t", 10, {"patch_size": 2, "window_size": [4, 4], "depths": [1, 1],
                                           "num_heads": [1, 2], "embed_dim": 16})
    assert isinstance(model.features[1][0], SwinTransformerBlockV2)
    assert model.features[1][0].attn.window_size == [4, 4]
    prunable_form(model)
    assert [s.count for s in find_sites(model)] == [1, 64, 2, 128]
