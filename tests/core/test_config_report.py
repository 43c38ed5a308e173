import dataclasses
import json

import pytest

from dnnkit.core.config import apply_overrides
from dnnkit.core.report import Claim, Result, Table, write_index, write_run


@dataclasses.dataclass(frozen=True)
class Cfg:
    epochs: int = 3
    lr: float = 0.1
    name: str = "a"
    flag: bool = False
    sizes: tuple[int, ...] = (1, 2)
    limit: int | None = None

    @classmethod
    def quick(cls):
        return cls(epochs=1)


def test_overrides_are_parsed_by_field_type():
    c = apply_overrides(Cfg(), ["epochs=7", "lr=1e-3", "flag=true", "sizes=3,4,5",
                                "limit=none", "name=b"])
    assert c == Cfg(epochs=7, lr=1e-3, name="b", flag=True, sizes=(3, 4, 5), limit=None)
    assert apply_overrides(Cfg(), ["limit=4"]).limit == 4


def test_unknown_key_and_bad_value():
    with pytest.raises(KeyError, match="Did you mean 'epochs'"):
        apply_overrides(Cfg(), ["epoch=3"])
    with pytest.raises(ValueError, match="Cannot parse"):
        apply_overrides(Cfg(), ["epochs=three"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(Cfg(), ["epochs"])


def test_claim_constructors():
    assert Claim.at_least("a", 0.9, 0.8).passed
    assert not Claim.at_most("a", 0.9, 0.8).passed
    assert Claim.between("a", 0.5, 0, 1).passed
    assert not Claim.holds("a", False).passed


def test_run_report_and_index(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = tmp_path / "exp"
    out.mkdir()
    plt.plot([0, 1])
    plt.savefig(out / "fig.png")
    plt.close()
    res = Result(summary="s", claims=[Claim.at_least("acc", 0.9, 0.8, paper="0.95"),
                                      Claim.at_most("err", float("nan"), 1.0)],
                 metrics={"acc": 0.9}, tables=[Table("t", ["a", "b"], [[1, 2.5]])],
                 figures=["fig.png"], deviations=["cpu scale"], oracle="lib: 1e-12")
    write_run(out, name="exp", paper="P", claim="C", config={"epochs": 1}, result=res, seed=0,
              seconds=1.0)
    for f in ("report.md", "metrics.json", "config.json", "env.json"):
        assert (out / f).is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert m["passed"] is False and m["claims"][1]["measured"] == "nan"
    text = (out / "report.md").read_text()
    for section in ("## Paper", "## Setup", "## Results", "## Claim check", "## Deviations",
                    "## Environment", "| acc | 0.95 |", "FAIL"):
        assert section in text
    md, page = write_index(tmp_path)
    assert "exp" in md.read_text() and "FAIL" in md.read_text()
    assert "data:image/png;base64," in page.read_text()
