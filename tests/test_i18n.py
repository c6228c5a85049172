"""Every word the page shows has an English and a Chinese text, and the backend's data errors read in Chinese."""

import ast
import re
import string
from types import SimpleNamespace

import pytest
from gradio.context import LocalContext

from backend.access.roles import Role
from backend.config import fields
from backend.data import DataOptions
from backend.data.report import inspect_dataset
from backend.errors import TuneForgeError
from backend.runs.warm_jobs import STARTING_PHASE
from tests.helpers import DATA, ROOT
from webui.charts import smoothed
from webui.i18n import SOURCE, catalogues, negotiate, read_catalogue, say, say_line
from webui.tab_runs import ANSWERS

KEY = re.compile(r"^(tabs|ui|msg|chart|empty|lines|columns)\.[a-z_.]*[a-z]$")  # not an f-string's head


def keys_used_in_webui() -> set[str]:
    """Every catalogue key written as a string literal in webui's modules."""
    used = set()
    for path in (ROOT / "webui").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and KEY.match(node.value):
                used.add(node.value)
    return used


def required_keys() -> set[str]:
    """What each language must say: every option's label and help, and every key the page uses."""
    from webui.tab import Tab

    options = {f"options.{f.name}.{part}" for f in fields() for part in ("label", "help")}
    tabs = {f"tabs.{tab.id}" for tab in Tab.__subclasses__()}
    made = {f"msg.may_{role.value}" for role in Role} | {f"ui.runs.answer_{key}" for key in ANSWERS}
    return options | tabs | made | keys_used_in_webui()


@pytest.mark.parametrize("language", sorted(catalogues()))
def test_every_option_button_and_message_has_a_text_in_every_language(language):
    words = catalogues()[language]
    missing = sorted(key for key in required_keys() if not words.get(key))
    assert not missing, f"webui/locales/{language}.yaml lacks: {', '.join(missing)}"
    assert keys_used_in_webui() > {"ui.train.start", "empty.comparison", "msg.started_run"}  # the scan finds them


@pytest.mark.parametrize("language", sorted(catalogues()))
def test_a_catalogue_has_no_stray_keys_and_fills_the_same_values_as_english(language):
    english, words = catalogues()[SOURCE], catalogues()[language]
    assert sorted(set(words) - set(english)) == []
    for key, text in words.items():
        assert isinstance(text, str), key
        assert placeholders(text) == placeholders(english[key]), key


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_english_help_is_the_options_own_and_is_not_copied_into_the_catalogue():
    assert not any(key.endswith(".help") for key in read_catalogue(ROOT / "webui/locales/en.yaml"))
    for f in fields():
        assert catalogues()[SOURCE][f"options.{f.name}.help"] == f.metadata["help"]


@pytest.fixture()
def chinese_page():
    """The request of a page showing zh-CN, as Gradio sets it for a handler."""
    token = LocalContext.request.set(SimpleNamespace(headers={"cookie": "tf_locale=zh-CN", "accept-language": "en"}))
    yield
    LocalContext.request.reset(token)


def test_a_data_error_reads_in_chinese_on_a_chinese_page(chinese_page):
    with pytest.raises(TuneForgeError) as refused:
        inspect_dataset(DataOptions(dataset=str(DATA / "bad_line.jsonl")))
    line = str(refused.value)
    assert re.search(r"line 3: invalid JSON", line)
    assert re.search(r"bad_line\.jsonl：第 3 行：JSON 无效（.+）", say_line(line))
    assert say_line("Cannot use this dataset") == "无法使用此数据集"
    assert say_line("a line no catalogue knows") == "a line no catalogue knows"
    assert say_line(STARTING_PHASE) == "正在启动：预热的任务服务器即将完成导入"  # a run waiting for the job server
    assert say("msg.started_run", run="r1") == "已启动运行 `r1`。关闭此页面后它会继续运行。"


def test_outside_a_page_and_for_unknown_languages_the_words_are_english():
    assert say_line("Cannot use this dataset") == "Cannot use this dataset"
    assert negotiate(["fr-FR", "de"]) == "en"
    assert negotiate(["zh-Hans", "en"]) == "zh-CN"


def test_the_smoothed_line_follows_tensorboards_debiased_average():
    assert smoothed([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])  # no pull towards 0 at the start
    assert smoothed([1.0, 3.0], 0.0) == [1.0, 3.0]
    jumpy = [0.6, 3.0, 0.6, 3.0, 0.6, 3.0]
    calm = smoothed(jumpy, 0.6)
    assert max(calm[2:]) - min(calm[2:]) < (max(jumpy) - min(jumpy)) / 2
