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

and four natural-language tasks for pretrained models (configs/smollm2_*.yaml), from the
hand-written word lists below, each pair in one split (60% train, 20% validation, 20% test):

  antonym      the opposite of a word        {"word": "hot", "answer": "cold"}
  past_tense   a verb's simple past          {"word": "go", "answer": "went"}
  plural       a noun's plural               {"word": "child", "answer": "children"}
  capital      a country's capital city      {"country": "France", "answer": "Paris"}

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


# Word lists of the natural-language tasks: common English, hand-written.
ANTONYMS = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("old", "young"),
    ("light", "dark"), ("strong", "weak"), ("rich", "poor"), ("early", "late"), ("full", "empty"),
    ("hard", "soft"), ("heavy", "light"), ("high", "low"), ("long", "short"), ("loud", "quiet"),
    ("wet", "dry"), ("clean", "dirty"), ("open", "closed"), ("true", "false"), ("good", "bad"),
    ("up", "down"), ("in", "out"), ("left", "right"), ("first", "last"), ("win", "lose"),
    ("buy", "sell"), ("push", "pull"), ("give", "take"), ("begin", "end"), ("love", "hate"),
    ("day", "night"), ("black", "white"), ("north", "south"), ("east", "west"), ("top", "bottom"),
    ("inside", "outside"), ("above", "below"), ("before", "after"), ("always", "never"),
    ("friend", "enemy"), ("thick", "thin"), ("wide", "narrow"), ("deep", "shallow"),
    ("safe", "dangerous"), ("easy", "difficult"), ("cheap", "expensive"), ("polite", "rude"),
    ("brave", "cowardly"), ("sweet", "sour"), ("smooth", "rough"), ("tight", "loose"),
    ("asleep", "awake"), ("alive", "dead"), ("accept", "refuse"),
    ("arrive", "leave"), ("increase", "decrease"), ("maximum", "minimum"), ("question", "answer"),
    ("victory", "defeat"), ("ancient", "modern"), ("public", "private"), ("simple", "complex"),
    ("visible", "invisible"), ("possible", "impossible"), ("honest", "dishonest"),
    ("known", "unknown"), ("correct", "incorrect"), ("legal", "illegal"),
    ("remember", "forget"), ("laugh", "cry"), ("float", "sink"), ("whisper", "shout"),
    ("guilty", "innocent"), ("generous", "selfish"), ("wild", "tame"), ("sharp", "dull"),
    ("fresh", "stale"), ("noisy", "silent"), ("sunny", "cloudy"),
    ("entrance", "exit"), ("import", "export"), ("minor", "major"), ("inner", "outer"),
    ("upper", "lower"), ("front", "back"), ("near", "far"), ("come", "go"), ("send", "receive"),
    ("attack", "defend"), ("borrow", "lend"), ("create", "destroy"), ("include", "exclude"),
    ("rise", "fall"), ("male", "female"), ("king", "queen"), ("boy", "girl"), ("husband", "wife"),
    ("brother", "sister"), ("uncle", "aunt"), ("morning", "evening"), ("summer", "winter"),
    ("war", "peace"), ("success", "failure"), ("profit", "loss"), ("positive", "negative"),
    ("wise", "foolish"), ("calm", "angry"), ("raw", "cooked"), ("solid", "liquid"),
    ("sick", "healthy"), ("busy", "idle"), ("clever", "stupid"), ("beautiful", "ugly"),
]
VERBS_PAST = [
    ("go", "went"), ("see", "saw"), ("eat", "ate"), ("take", "took"), ("give", "gave"),
    ("come", "came"), ("write", "wrote"), ("speak", "spoke"), ("drink", "drank"), ("swim", "swam"),
    ("sing", "sang"), ("run", "ran"), ("begin", "began"), ("break", "broke"), ("bring", "brought"),
    ("buy", "bought"), ("think", "thought"), ("teach", "taught"), ("catch", "caught"),
    ("fight", "fought"), ("find", "found"), ("fly", "flew"), ("forget", "forgot"),
    ("freeze", "froze"), ("get", "got"), ("grow", "grew"), ("hide", "hid"), ("hold", "held"),
    ("keep", "kept"), ("know", "knew"), ("leave", "left"), ("lose", "lost"), ("make", "made"),
    ("meet", "met"), ("pay", "paid"), ("ride", "rode"), ("ring", "rang"), ("rise", "rose"),
    ("say", "said"), ("sell", "sold"), ("send", "sent"), ("shake", "shook"), ("shine", "shone"),
    ("shoot", "shot"), ("sit", "sat"), ("sleep", "slept"), ("spend", "spent"), ("stand", "stood"),
    ("steal", "stole"), ("stick", "stuck"), ("strike", "struck"), ("swear", "swore"),
    ("tear", "tore"), ("tell", "told"), ("throw", "threw"), ("understand", "understood"),
    ("wake", "woke"), ("wear", "wore"), ("win", "won"), ("choose", "chose"), ("draw", "drew"),
    ("drive", "drove"), ("fall", "fell"), ("feel", "felt"), ("feed", "fed"), ("hang", "hung"),
    ("hear", "heard"), ("lead", "led"), ("lend", "lent"), ("light", "lit"), ("mean", "meant"),
    ("build", "built"), ("bite", "bit"), ("blow", "blew"), ("dig", "dug"), ("do", "did"),
    ("walk", "walked"), ("talk", "talked"), ("play", "played"), ("jump", "jumped"),
    ("cook", "cooked"), ("clean", "cleaned"), ("open", "opened"), ("close", "closed"),
    ("dance", "danced"), ("laugh", "laughed"), ("cry", "cried"), ("try", "tried"),
    ("carry", "carried"), ("study", "studied"), ("stop", "stopped"), ("plan", "planned"),
    ("drop", "dropped"), ("shop", "shopped"), ("hope", "hoped"), ("live", "lived"),
    ("love", "loved"), ("move", "moved"), ("smile", "smiled"), ("use", "used"), ("want", "wanted"),
    ("need", "needed"), ("start", "started"), ("visit", "visited"), ("paint", "painted"),
    ("watch", "watched"), ("wash", "washed"), ("fix", "fixed"), ("help", "helped"),
    ("ask", "asked"), ("answer", "answered"), ("call", "called"), ("climb", "climbed"),
    ("count", "counted"), ("enjoy", "enjoyed"), ("fill", "filled"), ("finish", "finished"),
    ("follow", "followed"), ("happen", "happened"), ("join", "joined"), ("kick", "kicked"),
    ("kiss", "kissed"), ("learn", "learned"), ("listen", "listened"), ("look", "looked"),
    ("miss", "missed"), ("pick", "picked"), ("pull", "pulled"), ("push", "pushed"),
    ("rain", "rained"), ("reach", "reached"), ("rest", "rested"), ("return", "returned"),
    ("show", "showed"), ("stay", "stayed"), ("travel", "traveled"), ("turn", "turned"),
    ("wait", "waited"), ("work", "worked"), ("worry", "worried"), ("marry", "married"),
    ("hurry", "hurried"), ("admit", "admitted"), ("prefer", "preferred"), ("agree", "agreed"),
]
NOUNS_PLURAL = [
    ("cat", "cats"), ("dog", "dogs"), ("house", "houses"), ("car", "cars"), ("tree", "trees"),
    ("book", "books"), ("apple", "apples"), ("chair", "chairs"), ("table", "tables"),
    ("bird", "birds"), ("river", "rivers"), ("road", "roads"), ("flower", "flowers"),
    ("window", "windows"), ("door", "doors"), ("friend", "friends"), ("teacher", "teachers"),
    ("city", "cities"), ("baby", "babies"), ("story", "stories"), ("party", "parties"),
    ("country", "countries"), ("family", "families"), ("lady", "ladies"), ("cherry", "cherries"),
    ("box", "boxes"), ("fox", "foxes"), ("bus", "buses"), ("dish", "dishes"), ("watch", "watches"),
    ("church", "churches"), ("brush", "brushes"), ("glass", "glasses"), ("class", "classes"),
    ("kiss", "kisses"), ("match", "matches"), ("beach", "beaches"), ("potato", "potatoes"),
    ("tomato", "tomatoes"), ("hero", "heroes"), ("knife", "knives"), ("wife", "wives"),
    ("leaf", "leaves"), ("wolf", "wolves"), ("life", "lives"), ("shelf", "shelves"),
    ("half", "halves"), ("loaf", "loaves"), ("child", "children"), ("man", "men"),
    ("woman", "women"), ("person", "people"), ("mouse", "mice"), ("goose", "geese"),
    ("tooth", "teeth"), ("foot", "feet"), ("ox", "oxen"), ("sheep", "sheep"), ("fish", "fish"),
    ("deer", "deer"), ("cactus", "cacti"), ("crisis", "crises"), ("key", "keys"), ("day", "days"),
    ("boy", "boys"), ("toy", "toys"), ("monkey", "monkeys"), ("valley", "valleys"),
    ("horse", "horses"), ("cow", "cows"), ("pig", "pigs"), ("duck", "ducks"), ("lion", "lions"),
    ("tiger", "tigers"), ("bear", "bears"), ("snake", "snakes"), ("frog", "frogs"),
    ("shirt", "shirts"), ("shoe", "shoes"), ("hat", "hats"), ("coat", "coats"), ("sock", "socks"),
    ("pen", "pens"), ("pencil", "pencils"), ("desk", "desks"), ("lamp", "lamps"),
    ("phone", "phones"), ("computer", "computers"), ("bottle", "bottles"), ("cup", "cups"),
    ("plate", "plates"), ("spoon", "spoons"), ("fork", "forks"), ("bed", "beds"),
    ("room", "rooms"), ("wall", "walls"), ("street", "streets"), ("bridge", "bridges"),
    ("mountain", "mountains"), ("island", "islands"), ("lake", "lakes"), ("cloud", "clouds"),
    ("star", "stars"), ("planet", "planets"), ("song", "songs"), ("game", "games"),
    ("idea", "ideas"), ("question", "questions"), ("answer", "answers"), ("problem", "problems"),
    ("student", "students"), ("doctor", "doctors"), ("farmer", "farmers"), ("king", "kings"),
    ("queen", "queens"), ("girl", "girls"), ("brother", "brothers"), ("sister", "sisters"),
    ("egg", "eggs"), ("orange", "oranges"), ("banana", "bananas"), ("lemon", "lemons"),
    ("candle", "candles"), ("garden", "gardens"), ("village", "villages"), ("school", "schools"),
    ("train", "trains"), ("plane", "planes"), ("boat", "boats"), ("wheel", "wheels"),
    ("ring", "rings"), ("coin", "coins"), ("map", "maps"), ("letter", "letters"),
    ("dress", "dresses"), ("bench", "benches"), ("wish", "wishes"), ("tax", "taxes"),
    ("army", "armies"), ("lily", "lilies"), ("puppy", "puppies"), ("body", "bodies"),
]
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("England", "London"), ("Ireland", "Dublin"), ("Scotland", "Edinburgh"),
    ("Belgium", "Brussels"), ("Netherlands", "Amsterdam"), ("Austria", "Vienna"),
    ("Switzerland", "Bern"), ("Poland", "Warsaw"), ("Hungary", "Budapest"), ("Greece", "Athens"),
    ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Denmark", "Copenhagen"), ("Finland", "Helsinki"),
    ("Iceland", "Reykjavik"), ("Russia", "Moscow"), ("Ukraine", "Kyiv"), ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Czechia", "Prague"),
    ("Slovakia", "Bratislava"), ("Slovenia", "Ljubljana"), ("Lithuania", "Vilnius"),
    ("Latvia", "Riga"), ("Estonia", "Tallinn"), ("Turkey", "Ankara"), ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"), ("Nigeria", "Abuja"), ("Ghana", "Accra"), ("Ethiopia", "Addis Ababa"),
    ("Morocco", "Rabat"), ("Algeria", "Algiers"), ("Tunisia", "Tunis"), ("Senegal", "Dakar"),
    ("Uganda", "Kampala"), ("Zimbabwe", "Harare"), ("Angola", "Luanda"), ("Sudan", "Khartoum"),
    ("China", "Beijing"), ("Japan", "Tokyo"), ("South Korea", "Seoul"), ("North Korea", "Pyongyang"),
    ("India", "New Delhi"), ("Pakistan", "Islamabad"), ("Bangladesh", "Dhaka"), ("Nepal", "Kathmandu"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"), ("Philippines", "Manila"),
    ("Malaysia", "Kuala Lumpur"), ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Syria", "Damascus"),
    ("Lebanon", "Beirut"), ("Jordan", "Amman"), ("Israel", "Jerusalem"), ("Saudi Arabia", "Riyadh"),
    ("Qatar", "Doha"), ("Afghanistan", "Kabul"), ("Mongolia", "Ulaanbaatar"), ("Taiwan", "Taipei"),
    ("Australia", "Canberra"), ("New Zealand", "Wellington"), ("Canada", "Ottawa"),
    ("United States", "Washington"), ("Mexico", "Mexico City"), ("Cuba", "Havana"),
    ("Jamaica", "Kingston"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"),
    ("Chile", "Santiago"), ("Peru", "Lima"), ("Colombia", "Bogota"), ("Venezuela", "Caracas"),
    ("Ecuador", "Quito"), ("Bolivia", "La Paz"), ("Uruguay", "Montevideo"), ("Paraguay", "Asuncion"),
    ("Panama", "Panama City"), ("Costa Rica", "San Jose"), ("Guatemala", "Guatemala City"),
    ("Honduras", "Tegucigalpa"), ("Nicaragua", "Managua"), ("Haiti", "Port-au-Prince"),
    ("Cyprus", "Nicosia"), ("Malta", "Valletta"), ("Albania", "Tirana"), ("Belarus", "Minsk"),
    ("Georgia", "Tbilisi"), ("Armenia", "Yerevan"), ("Azerbaijan", "Baku"), ("Kazakhstan", "Astana"),
    ("Uzbekistan", "Tashkent"), ("Sri Lanka", "Colombo"), ("Myanmar", "Naypyidaw"),
    ("Cambodia", "Phnom Penh"), ("Laos", "Vientiane"), ("Singapore", "Singapore"),
    ("Libya", "Tripoli"), ("Mali", "Bamako"), ("Somalia", "Mogadishu"), ("Rwanda", "Kigali"),
    ("Tanzania", "Dodoma"), ("Zambia", "Lusaka"), ("Namibia", "Windhoek"), ("Botswana", "Gaborone"),
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


WORD_TASKS = {
    "antonym": ("word", ANTONYMS),
    "past_tense": ("word", VERBS_PAST),
    "plural": ("word", NOUNS_PLURAL),
    "capital": ("country", CAPITALS),
}


def make_word_task(task, field, pairs):
    # A fixed shuffle per task, then 60/20/20: every input word in exactly one split.
    order = list(range(len(pairs)))
    random.Random(f"pft-{task}").shuffle(order)
    n_val = n_test = len(pairs) // 5
    cut = {"validation": order[:n_val], "test": order[n_val:n_val + n_test],
           "train": order[n_val + n_test:]}
    out = {}
    for split in ("train", "validation", "test"):
        out[split] = [{field: pairs[i][0], "answer": pairs[i][1], "id": f"{task}-{split}-{k:03d}"}
                      for k, i in enumerate(sorted(cut[split]))]
    return out


def main():
    for n, (task, gen) in enumerate(sorted(GENERATORS.items())):
        for split, records in make_generated(task, gen, seed=1000 + n).items():
            write_split(task, split, records)
    for split, records in make_tech_qa().items():
        write_split("tech_qa", split, records)
    for task, (field, pairs) in WORD_TASKS.items():
        for split, records in make_word_task(task, field, pairs).items():
            write_split(task, split, records)


if __name__ == "__main__":
    main()
