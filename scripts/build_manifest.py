#!/usr/bin/env python3
"""Build ``deepasa/scenes/manifest.csv``: which clip of which Debian package (or which synthetic render)
belongs to which class and split. A dev script; its output is committed, so users never run it.

Reproducible: keyword rules on file paths, licences parsed from each package's ``debian/copyright``,
byte-identical duplicates dropped, splits assigned by fixed language lists (speech) or by a greedy fill in
SHA-1 order of clip *groups* (everything else), and every kept clip conditioned once with the bank's own
code so that no listed clip turns out silent or too short at fetch time. No random numbers are drawn
except from fixed seeds.

Usage (packages extracted with ``apt-get download PKG && dpkg -x PKG_*.deb ROOT/PKG``)::

    python scripts/build_manifest.py --root /tmp/debs/ex            # writes deepasa/scenes/manifest.csv
    python scripts/build_manifest.py --root /tmp/debs/ex --dry-run  # only print the counts
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deepasa.scenes import bank_audio, bank_synth  # noqa: E402
from deepasa.scenes.soundbank import MANIFEST_FIELDS, MANIFEST_PATH, class_names  # noqa: E402

PACKAGES = (
    "tuxpaint-stamps-default", "ktuberling-data", "sonic-pi-samples", "lmms-common", "sound-theme-freedesktop",
    "oxygen-sounds", "lomiri-sounds", "hedgewars-data", "wesnoth-1.16-data", "supertux-data",
    "colobot-common-sounds", "deepin-sound-theme", "gnome-audio", "frozen-bubble-data",
)
AUDIO = re.compile(r"\.(wav|ogg|oga|flac|opus|mp3|aiff?)$", re.I)

# Speech (and the vocalisations of the same voice actors) is split by LANGUAGE, so no speaker, language or
# volunteer recording session is shared between splits. Everything not listed is train.
TEST_LANGS = {"ca", "el", "sl", "nn", "wa", "uk"}
VAL_LANGS = {"lt", "gl", "da", "es"}
LANGS = {"be", "bg", "ca", "da", "de", "el", "en", "es", "fi", "fr", "ga", "gl", "it", "lt", "ml", "nds", "nl",
         "nn", "pl", "pt", "pt_BR", "ro", "ru", "sl", "sr", "sv", "uk", "wa"}
HEDGEWARS_PACK_LANG = {"Default_es": "es", "Default_pl": "pl", "Default_ru": "ru", "Default_uk": "uk",
                       "Russian_pl": "pl"}   # the other packs are English voice actors
HEDGEWARS_VOCAL = re.compile(r"^(Ooff\d|Ow\d|Ouch|Laugh|PoisonCough|PoisonMoan|Jump\d|Firepunch\d|Hmm|Nooo)$")
REAL_SPEECH_QUOTA = {"train": 340, "val": 60, "test": 80}       # 480 real + 90 synthetic = 570 speech clips
SPLIT_TARGET = {"train": 0.7, "val": 0.1, "test": 0.2}           # for the clip-group fill of other classes
MIN_RAW_SECONDS = 0.1

# Licences where debian/copyright is not machine-readable (DEP-5) or does not cover the sound files.
LICENCE_OVERRIDES = {
    "wesnoth-1.16-data": [("*", "GPL-2+")],
    "gnome-audio": [("*/startup3.wav", "CC-BY-SA-2.0"), ("*/shutdown1.wav", "CC-BY-SA-2.0"),
                    ("*/gtk-events/*", "CC-BY-SA-2.0"), ("*/question.wav", "CC-BY-3.0"),
                    ("*/generic.wav", "CC-BY-3.0"), ("*/error.wav", "CC-BY-3.0")],   # others: no licence given
}


# ----------------------------------------------------------------------------------------- rules
def _stem(member: str) -> str:
    return Path(member).stem


def _variant_group(pkg: str, member: str) -> str:
    """Group variants of one recording (kick01/kick02, orc-hit-1/orc-die-2, drum_tom_hi_hard/_soft) together."""
    stem = _stem(member).lower()
    if pkg != "colobot-common-sounds":   # colobot names are bare numbers: each file is its own group
        stem = re.sub(r"([-_ ]?(\d+|hit|die|miss|hard|soft|big|small|closed|opened|open|lo|hi|mid|fire|puny))+$",
                      "", stem) or stem
    return f"{pkg}:{stem}"


def classify(pkg: str, member: str) -> tuple[str, str] | None:
    """(label, group) for one package member, or None when no rule keeps it. ``group`` "lang:xx" = speech split."""
    name = Path(member).name
    stem = _stem(member)
    vg = _variant_group(pkg, member)
    if pkg == "tuxpaint-stamps-default":
        m = re.search(r"_desc(?:_([A-Za-z_]+))?\.(ogg|wav)$", name)
        if m:
            lang = m.group(1) or "en"
            return ("speech", f"lang:{lang}") if lang in LANGS else None
        m = re.search(r"_([a-z]{2,3}(?:_[A-Z]{2})?)\.(ogg|wav)$", name)
        if m and m.group(1) in LANGS:
            return "speech", f"lang:{m.group(1)}"
        if "/stamps/animals/" in member or re.search(r"halloween/(blackcat|bat_left)", member):
            return "animal", vg
        if "/hobbies/music/percussion/" in member:
            return "percussion", vg
        if re.search(r"/hobbies/music/(string|wind)/", member):
            return "musical_instrument", vg
        if re.search(r"/(household|vehicles|space)/|camera_35mm", member):
            return ("impact_explosion", vg) if re.search(r"(bottle|glass)\.", name) else ("machine", vg)
        if re.search(r"fireworks", name):
            return "impact_explosion", vg
        return None
    if pkg == "ktuberling-data":
        m = re.search(r"/sounds/([^/@]+)(?:@[^/]*)?/[^/]+$", member)
        return ("speech", f"lang:{m.group(1)}") if m and m.group(1) in LANGS else None
    if pkg == "hedgewars-data":
        m = re.search(r"/voices/([^/]+)/", member)
        if m:
            lang = HEDGEWARS_PACK_LANG.get(m.group(1), "en")
            return ("vocalization" if HEDGEWARS_VOCAL.match(stem) else "speech"), f"lang:{lang}"
        if "/Music/" in member or stem == "ride_of_the_valkyries":
            return "music", vg
        if re.fullmatch(r"\d[A-G]", stem):
            return "musical_instrument", vg
        if re.fullmatch(r"hell_(ow|ooff|ugh)|Yoohoo", stem):
            return "vocalization", vg
        if re.fullmatch(r"beep|countdown\d|denied|CollectCrate|switchhog|skip|extratime|placed|suddendeath", stem):
            return "ui_alert", vg
        if re.fullmatch(r"drillgun|blowtorch|jetpackboost|plane|rcplane|ufo|pickhammer|steam|shutterclick", stem):
            return "machine", vg
        if re.search(r"explosion|impact|gun$|shotgun|sniperreload|minigun|mortar|molotov|baseballbat|"
                     r"firepunch_hit|whipcrack|hammer|bump|homerun", stem):
            return "impact_explosion", vg
        return None
    if pkg == "wesnoth-1.16-data":
        if "/ambient/" in member:
            return ("animal", vg) if re.match(r"birds|morning|night", stem) else None
        if re.fullmatch(r"(human(-female|-old)?|dwarf|elf|goblin|orc(-small)?|ogre|troll|naga|mermaid|mermen|"
                        r"ghoul|zombie|yeti)-(hit|die)(-\d)?|groan|ugg|wail.*|dwarf-laugh|witches-laugh", stem):
            return "vocalization", vg
        if re.match(r"(wolf|horse|bat|hiss|tusker-(hit|die))", stem):
            return "animal", vg
        if re.fullmatch(r"bell", stem):
            return "bell_ringtone", vg
        if re.search(r"/1\.16/sounds/[^/]+$", member):
            return "ui_alert", vg
        if re.match(r"(sword|axe|mace|club|flail|hatchet|dagger|spear|staff|fist|claws|knife|throwing-knife|bow|"
                    r"crossbow|sling|dart|thunderstick|gunshot|explosion|cave-in|miss-|throw-|squishy|pincers|"
                    r"tail|bite|dragonstick|mud-fist|melee-fire)", stem):
            return "impact_explosion", vg
        return None
    if pkg == "supertux-data":
        if "/music/" in member:
            return "music", vg
        if re.fullmatch(r"grunts|hurt|yeti_gna|yeti_roar", stem):
            return "vocalization", vg
        if re.fullmatch(r"phone|savebell2|savebell_low", stem):
            return "bell_ringtone", vg
        if re.fullmatch(r"saw|ticking|turnkey", stem):
            return "machine", vg
        if re.fullmatch(r"coin|coin2|coins_cleared|lifeup|upgrade|excellent|tada|switch|locked", stem):
            return "ui_alert", vg
        if re.fullmatch(r"explosion|fireworks|firecracker|brick|icecrash|cracking|crystallo-shatter|thud|stomp|"
                        r"kick|splat|squish|darthit|iceblock_bump|crystallo-shardhit", stem):
            return "impact_explosion", vg
        return None
    if pkg == "colobot-common-sounds":
        return ("music", vg) if "/music/" in member else ("machine", vg)
    if pkg == "frozen-bubble-data":
        if "zik" in stem:
            return "music", vg
        if stem == "snore":
            return "vocalization", vg
        if stem in ("applause", "typewriter"):
            return None
        return "ui_alert", vg
    if pkg == "lmms-common":
        cat = member.split("/samples/")[1].split("/")[0]
        if cat in ("instruments", "basses", "bassloops", "stringsnpads", "latin"):
            return ("bell_ringtone", vg) if "bell_choir" in stem else ("musical_instrument", vg)
        if cat in ("drums", "beats"):
            return None if stem.startswith("zap") else ("percussion", vg)
        if cat == "effects":
            return {"explode01": ("impact_explosion", vg), "wind_chimes01": ("bell_ringtone", vg)}.get(stem)
        if cat == "misc":
            if re.match(r"dong|metalish_dong", stem):
                return "bell_ringtone", vg
            if re.match(r"hit\d", stem):
                return "impact_explosion", vg
            if stem == "breath01":
                return "vocalization", vg
            if stem.startswith("metronome"):
                return "machine", vg
        return None
    if pkg == "sonic-pi-samples":
        if "/samples/" not in member:
            return None
        if re.match(r"(bd_|drum_|sn_|tabla_|glitch_perc|perc_snap|loop_(amen|breakbeat|compus|perc|safari|tabla|mika)|"
                    r"elec_(cymbal|filt_snare|fuzz_tom|hi_snare|hollow_kick|lo_snare|mid_snare|snare|soft_kick|wood|"
                    r"triangle))", stem):
            return "percussion", vg
        if re.match(r"(ambi_piano|guit_|bass_|glitch_bass)", stem):
            return "musical_instrument", vg
        if re.match(r"(elec_bell|elec_chime|perc_bell|mehackit_phone)", stem):
            return "bell_ringtone", vg
        if re.match(r"elec_(beep|blip|blup|bong|flip|ping|plip|pop|tick|twang|twip)", stem):
            return "ui_alert", vg
        if re.match(r"(misc_cineboom|perc_impact)", stem):
            return "impact_explosion", vg
        if re.match(r"(loop_3d_printer|loop_industrial)", stem):
            return "machine", vg
        if stem == "misc_crow":
            return "animal", vg
        if stem == "misc_burp":
            return "vocalization", vg
        return None
    if pkg == "sound-theme-freedesktop":
        if stem.startswith("audio-channel-"):
            return "speech", "lang:en"
        if stem == "audio-test-signal":
            return None
        if re.match(r"(alarm-clock|phone-|bell)", stem):
            return "bell_ringtone", vg
        if stem in ("camera-shutter", "screen-capture"):
            return "machine", vg
        return "ui_alert", vg
    if pkg == "lomiri-sounds":
        return ("machine", vg) if "/camera/" in member else ("bell_ringtone", vg)
    if pkg == "oxygen-sounds":
        return ("bell_ringtone", vg) if "Phone-Ring" in stem else ("ui_alert", vg)
    if pkg == "deepin-sound-theme":
        return ("machine", vg) if "camera-shutter" in stem else ("ui_alert", vg)
    if pkg == "gnome-audio":
        return ("bell_ringtone", vg) if stem == "phone" else ("ui_alert", vg)
    return None


# ----------------------------------------------------------------------------------------- licences
def parse_dep5(text: str) -> list[tuple[list[str], str]] | None:
    """[(file patterns, licence)] from a machine-readable debian/copyright, in file order; None if not DEP-5."""
    if not text.lstrip().startswith("Format:"):
        return None
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Files" in fields and "License" in fields:
            licence = fields["License"].split()[0] if fields["License"] else ""
            stanzas.append((fields["Files"].split(), licence))
    return stanzas


def _pattern_specificity(pattern: str, member: str) -> int:
    """How well a source-tree pattern matches an installed path: -1 for no match, else the number of literal
    characters of the longest pattern tail (after dropping leading source folders such as etc/, data/, share/)
    that matches a tail of the installed path. Source trees and install trees differ, so DEP-5's "last match
    wins" is applied among the most specific matches only."""
    if pattern.startswith("debian/"):
        return -1
    if pattern == "*":
        return 0
    parts = pattern.split("/")
    mparts = member.split("/")
    for i in range(len(parts)):                       # longest tail first
        tail = "/".join(parts[i:])
        literal = len(re.sub(r"[*?\[\]]", "", tail))
        if literal < 3:
            break
        if any(fnmatch.fnmatchcase("/".join(mparts[j:]), tail) for j in range(len(mparts))):
            return literal
    return -1


def licence_of(pkg: str, member: str, dep5: list | None) -> str | None:
    """The licence of one member: the most specific matching DEP-5 stanza (the later one on ties), or the
    overrides where debian/copyright is not machine-readable."""
    if pkg in LICENCE_OVERRIDES:
        for pattern, licence in LICENCE_OVERRIDES[pkg]:
            if fnmatch.fnmatchcase(member, pattern):
                return licence
        return None
    best, found = -1, None
    for patterns, licence in dep5 or []:
        score = max(_pattern_specificity(p, member) for p in patterns)
        if score >= 0 and score >= best:
            best, found = score, licence
    return found


# ----------------------------------------------------------------------------------------- synthetic
ESPEAK_LANGS = {
    "train": ["en-us", "en-gb", "fr-fr", "de", "it", "ru", "pl", "pt", "ro", "bg", "cs", "hu", "tr", "sv", "nl",
              "fi", "hr", "sk"],
    "val": ["lt", "da", "es"],
    "test": ["ca", "el", "sl", "uk", "nb"],
}
ESPEAK_VARIANTS = {"train": ["m1", "m2", "m3", "m4", "f1", "f2", "f3"], "val": ["m5", "f4"],
                   "test": ["m6", "m7", "f5"]}
FLITE_VOICES = {"train": ["awb", "rms"], "val": ["kal", "kal16"], "test": ["slt"]}
SYNTH_SPEECH = {"train": (50, 10), "val": (8, 4), "test": (12, 6)}   # (espeak-ng, flite) clips per split
ENGLISH = [
    "The quick brown fox jumps over the lazy dog.", "Please close the window before you leave the room.",
    "Could you turn the music down a little?", "The meeting has been moved to half past three.",
    "I left my keys on the kitchen table again.", "It is going to rain later this afternoon.",
    "Bring me the red box from the top shelf.", "We should call them back after dinner.",
    "The train to the airport leaves every twenty minutes.", "Nobody answered the door when I knocked.",
    "Turn left at the second set of traffic lights.", "She plays the violin in a small orchestra.",
    "My phone battery is almost empty.", "The children are playing in the garden.",
    "How much does a ticket to the museum cost?", "Remember to water the plants on Friday.",
    "The coffee machine on the third floor is broken.", "He read the whole book in a single night.",
    "Let us meet at the corner of the old market.", "The dog barked at the postman this morning.",
]
# GM programs 0-103 (pitched instruments; 104-127 are ethnic/percussive/sound effects). Program-disjoint
# splits: the program's position in its family of eight decides the split (test: 6th of each family; val: 3rd
# of every other family), so every family is in train and test.
FLUID_PROGRAMS = {"train": [p for p in range(104) if p % 8 != 5 and p % 16 != 10],
                  "val": [p for p in range(104) if p % 16 == 10],
                  "test": [p for p in range(104) if p % 8 == 5]}
FLUID_RENDERS = {"train": 1, "val": 2, "test": 1}   # phrases per program


def synthetic_rows() -> list[dict]:
    """Manifest rows of synthetic speech (espeak-ng, flite) and instrument phrases (fluidsynth)."""
    rows = []
    for split, (n_espeak, n_flite) in SYNTH_SPEECH.items():
        langs, variants = ESPEAK_LANGS[split], ESPEAK_VARIANTS[split]
        for i in range(n_espeak):
            # language and voice variant both cycle (their counts are coprime), so all variants are used
            lang = langs[i % len(langs)]
            variant = variants[i % len(variants)]
            h = int(hashlib.sha1(f"espeak-{split}-{i}".encode()).hexdigest(), 16)
            if lang.startswith("en"):
                text = ENGLISH[h % len(ENGLISH)]
            else:   # numbers, so the voice reads them in its own language
                text = " ".join(str((h >> (12 * k)) % 9000 + 12) for k in range(4))
            spec = {"voice": f"{lang}+{variant}", "speed": 130 + h % 50, "pitch": 30 + (h >> 8) % 40, "text": text}
            rows.append(dict(clip_id=f"espeak-{split}-{lang}-{variant}-{i:03d}", label="speech", split=split,
                             source="espeak-ng", package="espeak-ng", member="", group=f"espeak:{lang}",
                             licence="generated (espeak-ng, GPL-3+)", offset_s=0.0, spec=spec))
        for i in range(n_flite):
            voice = FLITE_VOICES[split][i % len(FLITE_VOICES[split])]
            spec = {"voice": voice, "text": ENGLISH[(i * 7 + len(split)) % len(ENGLISH)]}
            rows.append(dict(clip_id=f"flite-{split}-{voice}-{i:03d}", label="speech", split=split, source="flite",
                             package="flite", member="", group=f"flite:{voice}",
                             licence="generated (flite, BSD-style)", offset_s=0.0, spec=spec))
    for split, programs in FLUID_PROGRAMS.items():
        for program in programs:
            for k in range(FLUID_RENDERS[split]):
                spec = {"program": program, "seed": 1000 * program + k}
                rows.append(dict(clip_id=f"fluidsynth-p{program:03d}-{k}", label="musical_instrument", split=split,
                                 source="fluidsynth", package="fluidsynth", member="", group=f"gm:{program}",
                                 licence="generated (TimGM6mb.sf2, GPL-2)", offset_s=0.0, spec=spec))
    return rows


# ----------------------------------------------------------------------------------------- splits
def _sha(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()


def lang_split(lang: str) -> str:
    """Fixed split of a speech language."""
    return "test" if lang in TEST_LANGS else "val" if lang in VAL_LANGS else "train"


def assign_splits(rows: list[dict]) -> None:
    """Set row['split'] in place: speech groups by language; other groups by a greedy fill in SHA-1 order."""
    by_label = defaultdict(list)
    for r in rows:
        by_label[r["label"]].append(r)
    for label, items in by_label.items():
        counts = Counter()
        groups = defaultdict(list)
        for r in items:
            if r["group"].startswith("lang:"):
                r["split"] = lang_split(r["group"][5:])
                counts[r["split"]] += 1
            else:
                groups[r["group"]].append(r)
        if label == "speech":
            continue
        total = len(items)
        for g in sorted(groups, key=_sha):
            # the split furthest below its target share (test first on ties, so small classes still get >= 10)
            split = max(("test", "val", "train"), key=lambda s: SPLIT_TARGET[s] * total - counts[s])
            for r in groups[g]:
                r["split"] = split
            counts[split] += len(groups[g])


def select_speech(rows: list[dict], ok) -> list[dict]:
    """Cap real speech per split: round-robin over (package, language) groups in SHA-1 order, keeping clips
    that survive conditioning (``ok(row)``)."""
    keep = [r for r in rows if r["label"] != "speech"]
    for split, quota in REAL_SPEECH_QUOTA.items():
        pools = defaultdict(list)
        for r in rows:
            if r["label"] == "speech" and r["split"] == split:
                pools[(r["package"], r["group"])].append(r)
        queues = [sorted(pools[k], key=lambda r: _sha(r["clip_id"])) for k in sorted(pools)]
        chosen: list[dict] = []
        while len(chosen) < quota and any(queues):
            batch = []
            for q in queues:
                if q and len(chosen) + len(batch) < quota:
                    batch.append(q.pop(0))
            chosen += [r for r, good in zip(batch, ok(batch)) if good]
        keep += chosen
    return keep


# ----------------------------------------------------------------------------------------- main
def _check_clip(args: tuple[str, float]) -> tuple[bool, float]:
    path, offset = args
    try:
        x = bank_audio.condition_file(Path(path), offset)
    except Exception:  # noqa: BLE001 - unreadable files are dropped from the manifest
        return False, 0.0
    return x is not None, 0.0 if x is None else len(x) / bank_audio.SAMPLE_RATE


def _check_synth(row: dict) -> bool:
    x, sr = bank_synth.render(row["source"], row["spec"])
    return bank_audio.condition(x, sr) is not None


def main(argv: list[str] | None = None) -> int:
    """Scan the extracted packages, apply the rules, and write (or just print) the manifest."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="folder with one extracted package per sub-folder")
    ap.add_argument("--out", type=Path, default=MANIFEST_PATH)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)

    rows, seen, dropped = [], {}, Counter()
    for pkg in PACKAGES:
        base = args.root / pkg
        if not base.is_dir():
            raise SystemExit(f"missing extracted package {base}")
        copyright_file = next(iter(sorted(base.glob("usr/share/doc/*/copyright"))), None)
        dep5 = parse_dep5(copyright_file.read_text(errors="replace")) if copyright_file else None
        for path in sorted(p for p in base.rglob("*") if p.is_file() and AUDIO.search(p.name)):
            member = path.relative_to(base).as_posix()
            hit = classify(pkg, member)
            if hit is None:
                dropped[f"{pkg}: no rule"] += 1
                continue
            licence = licence_of(pkg, member, dep5)
            if not licence:
                dropped[f"{pkg}: no licence"] += 1
                continue
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            if digest in seen:
                dropped[f"{pkg}: duplicate of {seen[digest]}"] += 1
                continue
            try:
                info = sf.info(str(path))
            except Exception:  # noqa: BLE001
                dropped[f"{pkg}: unreadable"] += 1
                continue
            if info.frames < MIN_RAW_SECONDS * info.samplerate:
                dropped[f"{pkg}: too short"] += 1
                continue
            seen[digest] = pkg
            label, group = hit
            short = pkg.split("-")[0]
            clip_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{short}-{path.stem}")[:60] + "-" + _sha(member)[:6]
            offset = round(min(30.0, 0.25 * info.duration), 2) if label == "music" and info.duration > 15 else 0.0
            rows.append(dict(clip_id=clip_id, label=label, split="", source="deb", package=pkg, member=member,
                             group=group, licence=licence, offset_s=offset, spec={}, _path=str(path)))
    assign_splits(rows)

    with ProcessPoolExecutor(args.workers) as pool:
        def ok(batch):
            return [good for good, _ in pool.map(_check_clip, [(r["_path"], r["offset_s"]) for r in batch])]
        rows = select_speech(rows, ok)
        others = [r for r in rows if r["label"] != "speech"]
        good = ok(others)
    bad = {id(r) for r, g in zip(others, good) if not g}
    dropped["silent or too short after conditioning"] += len(bad)
    rows = [r for r in rows if id(r) not in bad]

    synth = synthetic_rows()
    if all(bank_synth.missing_tool(s) is None for s in ("espeak-ng", "flite", "fluidsynth")):
        bad_synth = [r["clip_id"] for r in synth if not _check_synth(r)]
        if bad_synth:
            raise SystemExit(f"synthetic renders failed conditioning: {bad_synth}")
    else:
        print("note: synthesis programs missing; synthetic rows written unchecked", file=sys.stderr)
    rows += synth

    order = {c: i for i, c in enumerate(class_names())}
    rows.sort(key=lambda r: (order[r["label"]], ("train", "val", "test").index(r["split"]), r["clip_id"]))
    ids = Counter(r["clip_id"] for r in rows)
    assert max(ids.values()) == 1, [k for k, v in ids.items() if v > 1]

    table = Counter((r["label"], r["split"]) for r in rows)
    for label in class_names():
        print(f"{label:20s} " + " ".join(f"{s}={table[(label, s)]:4d}" for s in ("train", "val", "test")))
    print(f"total {len(rows)} clips; dropped: " + ", ".join(f"{k} x{v}" for k, v in sorted(dropped.items())))
    if not args.dry_run:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({**r, "spec": json.dumps(r["spec"], ensure_ascii=False) if r["spec"] else ""})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
