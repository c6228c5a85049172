"""Images in datasets: LLaMA-Factory's `images` + `<image>` layout, OpenAI content parts, and the one-line refusals."""

import json

import pytest

from backend.data import DataOptions, load_splits
from backend.errors import TuneForgeError
from tests.helpers import LLAMAFACTORY_DATA, run_cli_in_process


def rows_dataset(tmp_path, rows, images=("a.png",)):
    from PIL import Image

    for name in images:
        Image.new("RGB", (32, 24), (200, 40, 40)).save(tmp_path / name)
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def turns(question="<image>What is it?", answer="A red square."):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


@pytest.mark.skipif(not LLAMAFACTORY_DATA.is_dir(), reason=f"{LLAMAFACTORY_DATA} is absent (LLaMA-Factory's demo data)")
def test_mllm_demo_reads_as_llamafactory_reads_it():
    """Every row, with its images resolved beside the file (val_size 0: LLaMA-Factory's own default)."""
    splits = load_splits(DataOptions(dataset="mllm_demo", dataset_dir=str(LLAMAFACTORY_DATA), val_size=0))
    rows = json.loads((LLAMAFACTORY_DATA / "mllm_demo.json").read_text(encoding="utf-8"))
    assert len(splits.train) == len(rows) == 6

    def pairs(examples, resolve):
        return sorted(([m["content"] for m in e["messages"]], [resolve(p) for p in e["images"]]) for e in examples)

    # The training set is shuffled (the config's seed), so the rows are compared as a set.
    assert pairs(splits.train, str) == pairs(rows, lambda p: str((LLAMAFACTORY_DATA / p).resolve()))


def test_openai_content_parts_become_placeholders_and_images(tmp_path):
    parts = [{"type": "image", "path": "a.png"}, {"type": "text", "text": "What is it?"}]
    url = [{"type": "text", "text": "And this?"}, {"type": "image_url", "image_url": {"url": "a.png"}}]
    talk = [("user", parts), ("assistant", "Red."), ("user", url), ("assistant", "Red again.")]
    rows = [{"messages": [{"role": role, "content": content} for role, content in talk]}]
    (example,) = load_splits(DataOptions(dataset=str(rows_dataset(tmp_path, rows)))).train
    assert example["messages"][0]["content"] == "<image>What is it?"
    assert example["messages"][2]["content"] == "And this?<image>"
    assert example["images"] == [str(tmp_path / "a.png")] * 2


@pytest.mark.parametrize(
    "row, message",
    [
        ({"messages": turns(), "images": ["gone.png"]}, r"row 1: image gone.png: file not found in "),
        ({"messages": turns(), "images": ["bad.png"]}, r"row 1: image bad.png: not a readable image"),
        ({"messages": turns(), "images": ["a.png", "a.png"]}, r"row 1: 1 <image> placeholder but 2 images; put one"),
        ({"messages": turns("Hi"), "images": ["a.png"]}, r"row 1: 0 <image> placeholders but 1 image;"),
        ({"messages": turns(answer="<image>"), "images": ["a.png"]}, r"row 1: an answer holds <image>; images belong"),
        ({"messages": turns(), "images": ["../a.png"]}, r"row 1: image \.\./a.png: outside the data file's folder"),
        ({"messages": turns(), "images": ["http://x/a.png"]}, r"row 1: image http://x/a.png: only image files"),
    ],
)
def test_each_bad_image_is_refused_in_one_located_line(tmp_path, row, message):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "bad.png").write_text("not an image")
    rows_dataset(tmp_path, [])  # an a.png beside the data's folder, not inside it
    path = rows_dataset(folder, [row])
    with pytest.raises(TuneForgeError, match=message) as refused:
        load_splits(DataOptions(dataset=str(path)))
    assert "\n" not in str(refused.value) and str(refused.value).startswith("data.json: ")


def test_images_in_a_text_only_models_run_are_refused_before_the_model_loads(tmp_path, shapes_dataset, tiny_model):
    import yaml

    config = tmp_path / "run.yaml"
    options = {"model": tiny_model, "dataset": str(shapes_dataset), "output_dir": str(tmp_path / "run")}
    config.write_text(yaml.safe_dump(options), encoding="utf-8")
    result = run_cli_in_process(config)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "training example " in last and "has images" in last and "reads text only" in last, last


def test_chat_endpoint_takes_images_as_a_list_of_paths_only():
    from backend.access.limits import check_arguments

    check_arguments("chat", {"images": ["uploads/a.png"]})
    check_arguments("chat", {"images": None})
    for bad, where in (("a.png", r"chat: images: wrong type"), ([3], r"chat: images\[0\]: wrong type")):
        with pytest.raises(TuneForgeError, match=where):
            check_arguments("chat", {"images": bad})


def test_a_text_row_without_an_images_column_keeps_its_image_tag_as_words(tmp_path):
    rows = [{"messages": turns("What does <image> mean in HTML?", "Nothing: HTML writes <img>.")}]
    (example,) = load_splits(DataOptions(dataset=str(rows_dataset(tmp_path, rows)))).train
    assert "images" not in example and example["messages"][0]["content"] == "What does <image> mean in HTML?"


def test_the_dataset_preview_shows_each_rows_images_as_thumbnails(tmp_path):
    from backend.data.images import thumbnails

    rows = [{"messages": turns("<image><image>Same?", "Yes."), "images": ["a.png", "a.png"]}, {"messages": turns("Hi")}]
    examples = load_splits(DataOptions(dataset=str(rows_dataset(tmp_path, rows)))).train
    shown = thumbnails(sorted(examples, key=lambda e: "images" not in e), size=16)  # the split shuffles
    assert [(row, place, count) for _, row, place, count in shown] == [(1, 1, 2), (1, 2, 2)]
    assert all(max(image.size) <= 16 for image, *_ in shown)


def test_a_zip_of_data_and_images_unpacks_into_the_uploads_and_reads(tmp_path):
    import zipfile

    from backend.access.zip_datasets import store_zip_dataset

    rows = [{"messages": turns(), "images": ["pics/a.png"]}]
    source = tmp_path / "src"
    (source / "pics").mkdir(parents=True)
    rows_dataset(source / "pics", [])  # a.png
    data = rows_dataset(source, rows)
    archive = tmp_path / "My shapes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(data, "data.json")
        z.write(source / "pics" / "a.png", "pics/a.png")
        z.writestr("__MACOSX/._data.json", "resource fork")
    stored = store_zip_dataset(archive, tmp_path / "uploads")
    assert stored == tmp_path / "uploads" / "My-shapes" / "data.json"
    (example,) = load_splits(DataOptions(dataset=str(stored))).train
    assert example["images"] == [str(stored.parent / "pics" / "a.png")]

    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../evil.json", "[]")
    with pytest.raises(TuneForgeError, match=r"My shapes.zip: member '../evil.json' would unpack outside"):
        store_zip_dataset(archive, tmp_path / "uploads")


def test_a_csv_names_its_images_in_one_cell(tmp_path):
    rows_dataset(tmp_path, [], images=("a.png", "b.png"))
    (tmp_path / "data.csv").write_text(
        'instruction,output,images\n"<image>What is it?",Red.,a.png\n'
        '"<image><image>Same?",Yes.,"[""a.png"", ""b.png""]"\n',
        encoding="utf-8",
    )
    examples = load_splits(DataOptions(dataset=str(tmp_path / "data.csv"))).train
    assert sorted(len(e["images"]) for e in examples) == [1, 2]


def test_the_dataset_report_counts_the_images(tmp_path):
    from backend.data.report import inspect_dataset

    rows = [{"messages": turns("<image><image>Same?", "Yes."), "images": ["a.png", "a.png"]}, {"messages": turns("Hi")}]
    rows.append({"messages": turns(), "images": ["a.png"]})
    report = inspect_dataset(DataOptions(dataset=str(rows_dataset(tmp_path, rows))))
    assert "Images: 3 in 2 rows, up to 2 in one row" in report.summary_lines()
