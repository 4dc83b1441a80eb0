"""Link names: derived from ids so teardown needs no state, always within the kernel's 15 characters."""

from __future__ import annotations

import pytest

from engine.network.errors import NetworkError
from engine.network.links import IFNAMSIZ, BridgeSpec, check_link_name, link_name_for


def test_a_hex_container_id_gives_a_readable_prefix():
    assert link_name_for("rade-", "0123456789abcdef" * 4) == "rade-0123456789"


def test_other_keys_are_hashed_to_a_name_that_fits():
    names = {link_name_for("rade-h", key) for key in ("node1", "node2", "a very long host name" * 3, "n")}
    assert len(names) == 4
    assert all(len(name) == IFNAMSIZ and name.startswith("rade-h") for name in names)
    assert link_name_for("rade-h", "node1") == link_name_for("rade-h", "node1")


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", "a b"])
def test_impossible_link_names_are_refused(name):
    with pytest.raises(NetworkError, match="invalid link name"):
        check_link_name(name)
    with pytest.raises(NetworkError):
        BridgeSpec(name, None)
