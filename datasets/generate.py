#!/usr/bin/env python3
"""Generates pft's bundled multi-task prompt collection, deterministically.

    python3 datasets/generate.py            # rewrites datasets/<task>/{train,validation,test}.jsonl

The output is committed, so nothing here is needed to train; rerunning reproduces it byte for
byte (fixed seeds, no clock, no hash randomisation). The tasks are small enough that a tiny model
learns them on two CPU cores in minutes, and varied enough that a multi-task schedule matters:

  add          two-digit addition            {"a": "37", "b": "45", "answer": "82"}
  reverse      reverse a lowercase word      {"word": "planet", "answer": "tenalp"}
  sort_digits  sort a list of digits         {"list": "[5, 2, 9]", "answer": "[2, 5, 9]"}
  max_digit    largest digit of a list       {"list": "[5, 2, 9]", "answer": "9"}
  uppercase    upper-case a short phrase     {"text": "red fox", "answer": "RED FOX"}
  sentiment    classify a short review       {"text": "...", "answer": "positive"|"negative"}
  tech_qa      short technical Q&A           {"question": "...", "answer": "..."}

Each record also has an "id" unique within its task. Splits are disjoint by input.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {"train": 2000, "validation": 200, "test": 200}

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "po", "si", "de", "ba", "vo", "gi", "fu", "he"]
WORDS = ["red", "blue", "green", "fox", "cat", "dog", "tree", "river", "stone", "light", "cloud",
         "quick", "small", "big", "old", "new", "happy", "cold", "warm", "fast", "slow", "bird",
         "moon", "sun", "star", "road", "city", "house", "book", "lamp", "door", "field"]
POSITIVE = ["great", "wonderful", "excellent", "loved", "fantastic", "superb", "delightful",
            "enjoyable", "brilliant", "pleasant"]
NEGATIVE = ["terrible", "awful", "boring", "hated", "dreadful", "poor", "disappointing", "dull",
            "annoying", "bad"]
SUBJECTS = ["the movie", "this book", "the meal", "the service", "the concert", "our stay",
            "the game", "this phone", "the lecture", "the show"]

# Short technical Q&A: each fact has several phrasings so that held-out phrasings can be tested.
TECH_QA = [
    (["What is the difference between a class and an object?",
      "How does a class differ from an object?",
      "Class versus object: what is the difference?"],
     "A class is a blueprint; an object is an instance of it."),
    (["What does a compiler do?", "What is the job of a compiler?",
      "Explain what a compiler does."],
     "It translates source code into machine code."),
    (["What is a pointer?", "Explain what a pointer is.", "Define a pointer."],
     "A variable that holds a memory address."),
    (["What is recursion?", "Explain recursion.", "Define recursion."],
     "A function calling itself on a smaller problem."),
    (["What is a hash table?", "Explain what a hash table is.", "Define a hash table."],
     "A map from keys to values using a hash function."),
    (["What is a stack?", "Explain what a stack is.", "Define a stack."],
     "A last-in, first-out collection."),
    (["What is a queue?", "Explain what a queue is.", "Define a queue."],
     "A first-in, first-out collection."),
    (["What does HTTP stand for?", "Expand the acronym HTTP.", "HTTP is short for what?"],
     "Hypertext Transfer Protocol."),
    (["What is a mutex?", "Explain what a mutex is.", "Define a mutex."],
     "A lock that lets one thread at a time enter."),
    (["What is a gradient?", "Explain what a gradient is.", "Define a gradient."],
     "The vector of partial derivatives of a function."),
    (["What is overfitting?", "Explain overfitting.", "Define overfitting."],
     "Fitting training data so closely that new data suffers."),
    (["What is a learning rate?", "Explain the learning rate.", "Define the learning rate."],
     "The step size of each optimizer update."),
    (["What is an API?", "Explain what an API is.", "Define an API."],
     "An interface that programs use to talk to each other."),
    (["What is a deadlock?", "Explain what a deadlock is.", "Define a deadlock."],
     "Threads waiting on each other forever."),
    (["What is a tokenizer?", "Explain what a tokenizer is.", "Define a tokenizer."],
     "It splits text into tokens a model can read."),
    (["What is all-reduce?", "Explain all-reduce.", "Define all-reduce."],
     "A collective that sums values and gives every rank the result."),
]


def word(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))


def digits(rng):
    return [rng.randint(0, 9) for _ in range(rng.randint(3, 5))]


def fmt_list(xs):
    return "[" + ", ".join(str(x) for x in xs) + "]"


def gen_add(rng):
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return {"a": str(a), "b": str(b), "answer": str(a + b)}, (a, b)


def gen_reverse(rng):
    w = word(rng)
    return {"word": w, "answer": w[::-1]}, w


def gen_sort(rng):
    xs = digits(rng)
    return {"list": fmt_list(xs), "answer": fmt_list(sorted(xs))}, tuple(xs)


def gen_max(rng):
    xs = digits(rng)
    return {"list": fmt_list(xs), "answer": str(max(xs))}, tuple(xs)


def gen_upper(rng):
    t = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 3)))
    return {"text": t, "answer": t.upper()}, t


def gen_sentiment(rng):
    positive = rng.random() < 0.5
    adj = rng.choice(POSITIVE if positive else NEGATIVE)
    subj = rng.choice(SUBJECTS)
    pattern = rng.choice(["{s} was {a}.", "I found {s} {a}.", "Honestly, {s} was {a}!",
                          "{s}: {a}."])
    text = pattern.format(s=subj, a=adj)
    text = text[0].upper() + text[1:]
    return {"text": text, "answer": "positive" if positive else "negative"}, text


GENERATORS = {
    "add": gen_add,
    "reverse": gen_reverse,
    "sort_digits": gen_sort,
    "max_digit": gen_max,
    "uppercase": gen_upper,
    "sentiment": gen_sentiment,
}


def write_split(task, split, records):
    os.makedirs(os.path.join(HERE, task), exist_ok=True)
    with open(os.path.join(HERE, task, split + ".jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")


# sentiment has 800 distinct reviews in all: smaller splits.
TASK_SIZES = {"sentiment": {"train": 600, "validation": 100, "test": 100}}


def make_generated(task, gen, seed):
    rng = random.Random(seed)
    seen = set()
    out = {}
    for split in ("train", "validation", "test"):
        records = []
        limit = TASK_SIZES.get(task, SIZES)[split]
        attempts = 0
        while len(records) < limit and attempts < limit * 200:
            attempts += 1
            rec, key = gen(rng)
            if key in seen:
                continue
            seen.add(key)
            rec["id"] = f"{task}-{split}-{len(records):05d}"
            records.append(rec)
        out[split] = records
    return out


def make_tech_qa():
    # Train on the first two phrasings of every fact; validation and test ask the third.
    train, validation = [], []
    for i, (questions, answer) in enumerate(TECH_QA):
        for j, q in enumerate(questions[:2]):
            train.append({"question": q, "answer": answer, "id": f"tech_qa-train-{i:02d}{j}"})
        validation.append({"question": questions[2], "answer": answer,
                           "id": f"tech_qa-validation-{i:02d}"})
    test = [dict(r, id=r["id"].replace("validation", "test")) for r in validation]
    return {"train": train, "validation": validation, "test": test}


def main():
    for n, (task, gen) in enumerate(sorted(GENERATORS.items())):
        for split, records in make_generated(task, gen, seed=1000 + n).items():
            write_split(task, split, records)
    for split, records in make_tech_qa().items():
        write_split("tech_qa", split, records)


if __name__ == "__main__":
    main()
