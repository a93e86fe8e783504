"""Malformed genotype data (a hand-edited file): always ``GenotypeError`` naming the place, never a TypeError,
KeyError or ValueError of the parsing (issue #21)."""

import copy

import pytest

from search_spaces import GenotypeError, genotype_from_dict, genotype_from_json, genotype_from_yaml

GOOD = {"space": "darts", "channels": 8, "cells": 3,
        "normal": {"nodes": [[["sep_conv_3x3", 0], ["skip_connect", 1]]]},
        "reduce": {"nodes": [[["max_pool_3x3", 0], ["sep_conv_3x3", 1]]]}}
STAGE = {"channels": 8, "stride": 1, "ops": ["mbconv_k3_e3"]}


def edited(path, value):
    data = copy.deepcopy(GOOD)
    *inner, last = path
    target = data
    for key in inner:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


CASES = [
    (edited(("normal", "nodes", 0, 0), ["sep_conv_3x3", "a"]), "normal.nodes[0][0][1]: expected an integer, got 'a'"),
    (edited(("normal", "nodes", 0, 0), ["sep_conv_3x3", 1.5]), "normal.nodes[0][0][1]: expected an integer, got 1.5"),
    (edited(("normal", "nodes", 0, 0), ["sep_conv_3x3", True]), "normal.nodes[0][0][1]: expected an integer, got True"),
    (edited(("reduce", "nodes", 0, 1), ["sep_conv_3x3"]), "reduce.nodes[0][1]: expected a list of 2 [str, int]"),
    (edited(("normal", "nodes", 0, 0), "sep_conv_3x3"), "normal.nodes[0][0]: expected a list, got 'sep_conv_3x3'"),
    (edited(("normal", "nodes", 0, 0), [3, 0]), "normal.nodes[0][0][0]: expected a name"),
    (edited(("normal", "nodes"), 3), "normal.nodes: expected a list, got 3"),
    (edited(("normal", "nodes"), KeyError), "normal.nodes: missing"),
    (edited(("normal",), KeyError), "normal: missing (the keys of a darts genotype are normal, reduce"),
    (edited(("normal",), [1, 2]), "normal: expected a mapping of nodes, concat"),
    (edited(("normal", "concat"), ["a"]), "normal.concat[0]: expected an integer"),
    (edited(("normal", "concat"), 2), "normal.concat: expected a list, got 2"),
    (edited(("channels",), 1.5), "channels: expected an integer, got 1.5"),
    (edited(("cells",), "three"), "cells: expected an integer"),
    (edited(("normal", "edges"), []), "normal.edges: unknown key; the keys of normal are nodes, concat"),
    (edited(("width",), 8), "width: unknown key; the keys of a darts genotype are"),
    ({"space": ["darts"]}, "needs 'space' set to one of blocks, darts, elastic, fixed"),
    ([GOOD], "needs 'space' set to one of"),
    ({"space": "blocks", "stages": 3}, "stages: expected a list, got 3"),
    ({"space": "blocks", "stages": ["x"]}, "stages[0]: expected a mapping of channels, stride, ops, got 'x'"),
    ({"space": "blocks", "stages": [{"channels": 8, "ops": ["mbconv_k3_e3"]}]}, "stages[0].stride: missing"),
    ({"space": "blocks", "stages": [{**STAGE, "channels": "a"}]}, "stages[0].channels: expected an integer"),
    ({"space": "blocks", "stages": [{**STAGE, "ops": "mbconv_k3_e3"}]}, "stages[0].ops: expected a list"),
    ({"space": "blocks", "stages": [STAGE], "stem_channels": "a"}, "stem_channels: expected an integer"),
    ({"space": "fixed", "model": ["conv4"]}, "model: expected a name"),
    ({"space": "fixed", "model": "conv4", "options": [1]}, "options[0]: expected a list, got 1"),
    ({"space": "fixed", "model": "conv4", "options": {"width": 8}}, "options.width: unknown option of model conv4; "
                                                                     "its options are hidden, layers"),
    ({"space": "fixed", "model": "conv4", "options": {"hidden": 0}}, "options.hidden: must be at least 1"),
    ({"space": "fixed", "model": "resnet12", "options": {"widths": []}}, "options.widths:"),
]


@pytest.mark.parametrize("data, message", CASES, ids=[c[1][:40] for c in CASES])
def test_malformed_data_names_its_place(data, message):
    with pytest.raises(GenotypeError) as info:
        genotype_from_dict(data)
    assert message in str(info.value)


def test_the_untouched_data_reads():
    assert genotype_from_dict(copy.deepcopy(GOOD)).normal.nodes[0][1] == ("skip_connect", 1)
    assert genotype_from_dict({"space": "fixed", "model": "resnet12", "options": {"widths": [8, 8]}}).options == \
        (("widths", (8, 8)),)


def test_text_that_does_not_parse_is_a_genotype_error():
    with pytest.raises(GenotypeError, match=r"not YAML \(line 3, column 1: expected .,. or .\]."):
        genotype_from_yaml("space: darts\nnormal: {nodes: [[[sep_conv_3x3, 0]\n")
    with pytest.raises(GenotypeError, match="not JSON: Expecting value"):
        genotype_from_json('{"space": "darts", "normal": ')
