"""The demo's generated world: its entities and facts, and the plain text a tiny base model is
pretrained on.

A base model such as LLaMA knows a language and the world before any instruction tuning; the
instruction data then teaches the format and the tasks. The demo keeps that separation: this
module's tables are the world (capitals, facts, a dictionary, categories, small programs,
people, places, sentiment words, ...), :func:`world_documents` states them in plain Chinese and
English text (no instruction format, no questions), and `lorabench.demo.corpus` asks about them
in BELLE's instruction format.

Part of the world is known from pretraining alone: every third entry of the knowledge tables
(:data:`TAUGHT` leaves it out) is never mentioned by the instruction data, while the eval set asks
about all of them (:data:`ALL`), so an eval question about, say, France's capital can only be
answered by a model whose base learnt it.

Held-out text: documents drawn with the `heldout` stream never occur in the `train` stream's
draws (each is a fresh random combination of the same facts), so a model's loss on them measures
what it learnt of the language and the world, not memorised documents.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

SPLITS = ("train", "heldout")
"""Independent streams of world documents: pretraining text and text to measure it on."""

PRETRAIN_ONLY_EVERY = 3
"""Every third entry of a knowledge table (index % 3 == 2) is known from pretraining alone."""

# --------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------

NAMES_ZH = ("小明", "小红", "小华", "小刚", "小丽", "小军", "小芳", "小强")
NAMES_EN = ("Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry")

CAPITALS = (
    ("中国", "北京", "China", "Beijing"),
    ("日本", "东京", "Japan", "Tokyo"),
    ("法国", "巴黎", "France", "Paris"),
    ("英国", "伦敦", "the United Kingdom", "London"),
    ("德国", "柏林", "Germany", "Berlin"),
    ("意大利", "罗马", "Italy", "Rome"),
    ("俄罗斯", "莫斯科", "Russia", "Moscow"),
    ("美国", "华盛顿", "the United States", "Washington"),
    ("加拿大", "渥太华", "Canada", "Ottawa"),
    ("澳大利亚", "堪培拉", "Australia", "Canberra"),
    ("韩国", "首尔", "South Korea", "Seoul"),
    ("西班牙", "马德里", "Spain", "Madrid"),
    ("埃及", "开罗", "Egypt", "Cairo"),
    ("印度", "新德里", "India", "New Delhi"),
    ("巴西", "巴西利亚", "Brazil", "Brasilia"),
    ("泰国", "曼谷", "Thailand", "Bangkok"),
    ("越南", "河内", "Vietnam", "Hanoi"),
    ("希腊", "雅典", "Greece", "Athens"),
    ("土耳其", "安卡拉", "Turkey", "Ankara"),
    ("阿根廷", "布宜诺斯艾利斯", "Argentina", "Buenos Aires"),
)
"""(country zh, capital zh, country en, capital en)."""

FACTS = (
    ("一年有几个月？", "12", "一年有12个月。", "How many months are there in a year?", "12",
     "A year has 12 months."),
    ("一周有几天？", "7", "一周有7天。", "How many days are there in a week?", "7",
     "A week has 7 days."),
    ("一天有多少个小时？", "24", "一天有24个小时。", "How many hours are there in a day?", "24",
     "A day has 24 hours."),
    ("一小时有多少分钟？", "60", "一小时有60分钟。", "How many minutes are there in an hour?",
     "60", "An hour has 60 minutes."),
    ("三角形有几条边？", "3", "三角形有3条边。", "How many sides does a triangle have?", "3",
     "A triangle has 3 sides."),
    ("水的化学式是什么？", "H2O", "水的化学式是H2O。", "What is the chemical formula of water?",
     "H2O", "The chemical formula of water is H2O."),
    ("太阳从哪个方向升起？", "东方", "太阳从东方升起。", "In which direction does the sun rise?",
     "the east", "The sun rises in the east."),
    ("地球上最大的海洋是什么？", "太平洋", "地球上最大的海洋是太平洋。",
     "What is the largest ocean on Earth?", "the Pacific Ocean",
     "The largest ocean on Earth is the Pacific Ocean."),
    ("中国最长的河流是什么？", "长江", "中国最长的河流是长江。",
     "What is the longest river in China?", "the Yangtze River",
     "The longest river in China is the Yangtze River."),
    ("彩虹有几种颜色？", "7", "彩虹有7种颜色。", "How many colors does a rainbow have?", "7",
     "A rainbow has 7 colors."),
    ("一米等于多少厘米？", "100", "一米等于100厘米。", "How many centimeters are there in a meter?",
     "100", "A meter has 100 centimeters."),
    ("正方形有几条边？", "4", "正方形有4条边。", "How many sides does a square have?", "4",
     "A square has 4 sides."),
)  # fmt: skip
"""(question zh, answer zh, statement zh, question en, answer en, statement en)."""

DICTIONARY = (
    ("苹果", "apple"),
    ("香蕉", "banana"),
    ("猫", "cat"),
    ("狗", "dog"),
    ("书", "book"),
    ("水", "water"),
    ("太阳", "sun"),
    ("月亮", "moon"),
    ("学校", "school"),
    ("老师", "teacher"),
    ("朋友", "friend"),
    ("电脑", "computer"),
    ("红色", "red"),
    ("蓝色", "blue"),
    ("快乐", "happy"),
    ("早上", "morning"),
    ("家", "home"),
    ("花", "flower"),
    ("雨", "rain"),
    ("鱼", "fish"),
)
"""(word zh, word en)."""

CATEGORIES = (
    (
        "水果",
        "fruits",
        "苹果,香蕉,橙子,葡萄,西瓜,草莓",
        "apple,banana,orange,grape,watermelon,strawberry",
    ),
    ("动物", "animals", "猫,狗,熊猫,老虎,兔子,大象", "cat,dog,panda,tiger,rabbit,elephant"),
    ("颜色", "colors", "红色,蓝色,绿色,黄色,白色,黑色", "red,blue,green,yellow,white,black"),
    (
        "运动",
        "sports",
        "足球,篮球,游泳,跑步,网球,乒乓球",
        "football,basketball,swimming,running,tennis,table tennis",
    ),
    (
        "交通工具",
        "vehicles",
        "汽车,火车,飞机,自行车,轮船,地铁",
        "car,train,plane,bicycle,ship,subway",
    ),
    (
        "蔬菜",
        "vegetables",
        "白菜,土豆,西红柿,胡萝卜,黄瓜,洋葱",
        "cabbage,potato,tomato,carrot,cucumber,onion",
    ),
    ("乐器", "instruments", "钢琴,吉他,小提琴,鼓,笛子,二胡", "piano,guitar,violin,drum,flute,erhu"),
    ("饮料", "drinks", "茶,咖啡,牛奶,果汁,可乐,豆浆", "tea,coffee,milk,juice,cola,soy milk"),
)
"""(category zh, category en, members zh, members en); members comma-separated, aligned."""

CODE_FUNCTIONS = (
    ("square", "{p} 的平方", "the square of {p}", "{p} * {p}"),
    ("cube", "{p} 的立方", "the cube of {p}", "{p} ** 3"),
    ("double", "{p} 的两倍", "twice {p}", "2 * {p}"),
    ("half", "{p} 的一半", "half of {p}", "{p} / 2"),
    ("negate", "{p} 的相反数", "the negative of {p}", "-{p}"),
    ("add_one", "{p} 加一后的值", "{p} plus one", "{p} + 1"),
    ("is_even", "{p} 是否为偶数", "whether {p} is even", "{p} % 2 == 0"),
    ("absolute", "{p} 的绝对值", "the absolute value of {p}", "abs({p})"),
)
"""(function name, zh description, en description, body); {p} is the parameter name."""
CODE_PARAMS = ("x", "n", "a", "b", "k", "m", "num", "value")

SENTIMENT_SUBJECTS_ZH = ("这部电影", "这家餐厅", "这本书", "今天的天气", "这次旅行", "这款手机")
SENTIMENT_ADVERBS_ZH = ("非常", "真的", "特别", "十分")
POSITIVE_ZH = ("精彩", "好", "有趣", "令人满意", "美好")
NEGATIVE_ZH = ("糟糕", "无聊", "差劲", "令人失望", "难受")
SENTIMENT_SUBJECTS_EN = ("The movie", "The restaurant", "The book", "The weather", "The trip")
SENTIMENT_ADVERBS_EN = ("very", "really", "quite", "truly")
POSITIVE_EN = ("great", "good", "fun", "wonderful", "pleasant")
NEGATIVE_EN = ("bad", "boring", "awful", "disappointing", "terrible")

PLACES_ZH = ("公园", "图书馆", "学校", "超市", "海边", "博物馆")
ACTIVITIES_ZH = ("散步", "看书", "买东西", "画画", "踢足球", "拍照")
PLACES_EN = ("the park", "the library", "the school", "the market", "the beach", "the museum")
ACTIVITIES_EN = ("took a walk", "read a book", "went shopping", "drew a picture", "took photos")

JOBS = (
    ("老师", "teacher", "a"),
    ("医生", "doctor", "a"),
    ("工程师", "engineer", "an"),
    ("厨师", "cook", "a"),
)
"""(job zh, job en, its English article)."""

SUMMARY_TOPICS_ZH = (
    (
        "{city}是一座历史悠久的城市。",
        ("这里有很多古老的建筑。", "每年都有很多游客来参观。", "当地的小吃也非常有名。"),
    ),
    (
        "{name}是一个喜欢运动的人。",
        ("{name}每天早上都去跑步。", "周末{name}常常去打篮球。", "{name}还参加了学校的游泳队。"),
    ),
    (
        "{name}非常喜欢读书。",
        ("{name}每周都去图书馆。", "{name}的房间里有很多书。", "{name}最喜欢看历史故事。"),
    ),
)
SUMMARY_TOPICS_EN = (
    (
        "{city} is a city with a long history.",
        ("It has many old buildings.", "Many tourists visit it every year.", "Its food is famous."),
    ),
    (
        "{name} is a person who loves sports.",
        (
            "{name} goes running every morning.",
            "On weekends {name} plays basketball.",
            "{name} also swims.",
        ),
    ),
    (
        "{name} really enjoys reading.",
        (
            "{name} goes to the library every week.",
            "{name} has many books.",
            "{name} likes history.",
        ),
    ),
)
"""(topic sentence, supporting sentences): a paragraph whose first sentence sums it up."""

GENERATION_TOPICS = (
    ("春天", "spring"),
    ("夏天", "summer"),
    ("秋天", "autumn"),
    ("冬天", "winter"),
    ("大海", "the sea"),
    ("友谊", "friendship"),
    ("学习", "learning"),
    ("家乡", "home"),
    ("月亮", "the moon"),
    ("音乐", "music"),
    ("旅行", "travel"),
    ("读书", "reading"),
    ("运动", "sports"),
    ("家人", "family"),
    ("老师", "teachers"),
    ("城市", "the city"),
)
GENERATION_LINES_ZH = (
    "{t}总是让人感到温暖和快乐。",
    "每当想起{t}，我的心里就充满了希望。",
    "{t}是生活中美好的一部分。",
)
GENERATION_LINES_EN = (
    "{t} always makes people feel warm and happy.",
    "Whenever I think of {t}, my heart is full of hope.",
    "{t} is a beautiful part of life.",
)
GREETINGS = (
    ("生日祝福", "祝{name}生日快乐，天天开心！", "birthday wish", "Happy birthday, {name}!"),
    ("新年祝福", "祝{name}新年快乐，万事如意！", "New Year wish", "Happy New Year, {name}!"),
    ("毕业祝贺", "祝贺{name}顺利毕业，前程似锦！", "graduation message", "Well done, {name}!"),
    ("感谢的话", "谢谢{name}的帮助，你真好！", "thank-you note", "Thank you, {name}!"),
)
"""(occasion zh, message zh, occasion en, message en); {name} is the addressee."""

MATH_OBJECTS = (("苹果", "个"), ("铅笔", "支"), ("糖果", "颗"), ("气球", "个"), ("本子", "本"))
"""(object, measure word) of the Chinese word problems and stories."""


def _taught(table: Sequence[T]) -> tuple[T, ...]:
    return tuple(entry for i, entry in enumerate(table) if i % PRETRAIN_ONLY_EVERY != 2)


@dataclass(frozen=True)
class Entities:
    """The knowledge tables a generator may draw from."""

    capitals: tuple[tuple[str, str, str, str], ...]
    facts: tuple[tuple[str, str, str, str, str, str], ...]
    dictionary: tuple[tuple[str, str], ...]
    categories: tuple[tuple[str, str, str, str], ...]
    code_functions: tuple[tuple[str, str, str, str], ...]


ALL = Entities(CAPITALS, FACTS, DICTIONARY, CATEGORIES, CODE_FUNCTIONS)
"""Everything: what pretraining text states and what the eval set asks about."""
TAUGHT = Entities(*(_taught(table) for table in (CAPITALS, FACTS, DICTIONARY, CATEGORIES,
                                                  CODE_FUNCTIONS)))  # fmt: skip
"""What instruction data may mention: ALL without its pretraining-only entries."""


# --------------------------------------------------------------------------------------------
# Plain-text documents: each generator writes one short paragraph, in Chinese or English.
# --------------------------------------------------------------------------------------------


def _sentence_case(text: str) -> str:
    return text[0].upper() + text[1:]


def _join(sentences: Sequence[str], zh: bool) -> str:
    return ("" if zh else " ").join(_sentence_case(s) if not zh else s for s in sentences)


# Several phrasings of each fact: a fact seen in one wording only is hard to recall when asked
# in another (the eval's questions are worded like neither). The demo's retention benchmark
# (`lorabench.demo.panel`) completes these very sentences.
CAPITAL_FRAMES_ZH = (
    "{c}的首都是{k}。",
    "{k}是{c}的首都。",
    "{c}的首都叫{k}。",
    "{k}是{c}最重要的城市。",
)
CAPITAL_FRAMES_EN = (
    "the capital of {c} is {k}.",
    "{k} is the capital of {c}.",
    "the capital city of {c} is called {k}.",
    "{k} is the most important city in {c}.",
)
DICTIONARY_FRAMES_ZH = ("“{z}”的英文是{e}。", "{z}用英文说是{e}。", "英文单词{e}的意思是{z}。")
DICTIONARY_FRAMES_EN = (
    "the English word for {z} is {e}.",
    "{e} is {z} in Chinese.",
    "in Chinese, {e} is written {z}.",
)
CATEGORY_MEMBER_ZH = "{m}是一种{c}。"
CATEGORY_MEMBER_EN = "{m} is one of the {c}."
CODE_INTRO_ZH = "下面的 Python 函数 {f} 返回 {d}："
CODE_INTRO_EN = "The Python function {f} returns {d}:"


def _capitals_doc(rng: random.Random, zh: bool) -> str:
    frames = CAPITAL_FRAMES_ZH if zh else CAPITAL_FRAMES_EN
    chosen = rng.sample(CAPITALS, k=rng.randint(2, 4))
    sentences = []
    for country_zh, capital_zh, country_en, capital_en in chosen:
        c, k = (country_zh, capital_zh) if zh else (country_en, capital_en)
        sentences.append(rng.choice(frames).format(c=c, k=k))
    return _join(sentences, zh)


def _facts_doc(rng: random.Random, zh: bool) -> str:
    chosen = rng.sample(FACTS, k=rng.randint(2, 4))
    return _join([fact[2] if zh else fact[5] for fact in chosen], zh)


def _dictionary_doc(rng: random.Random, zh: bool) -> str:
    frames = DICTIONARY_FRAMES_ZH if zh else DICTIONARY_FRAMES_EN
    chosen = rng.sample(DICTIONARY, k=rng.randint(2, 4))
    sentences = [rng.choice(frames).format(z=z, e=e) for z, e in chosen]
    if not zh and rng.random() < 0.5:
        _, word = rng.choice(DICTIONARY)
        sentences.append(f"{word} in capital letters is {word.upper()}.")
    return _join(sentences, zh)


def _categories_doc(rng: random.Random, zh: bool) -> str:
    category_zh, category_en, members_zh, members_en = rng.choice(CATEGORIES)
    members = (members_zh if zh else members_en).split(",")
    listed = [members[i] for i in sorted(rng.sample(range(len(members)), rng.randint(3, 5)))]
    one = rng.choice(members)
    if zh:
        listing = "、".join(listed[:-1])
        member = CATEGORY_MEMBER_ZH.format(m=one, c=category_zh)
        return f"常见的{category_zh}有{listing}和{listed[-1]}。{member}"
    member = _sentence_case(CATEGORY_MEMBER_EN.format(m=one, c=category_en))
    return f"Common {category_en} include {', '.join(listed[:-1])} and {listed[-1]}. {member}"


def arithmetic_fact(rng: random.Random) -> tuple[int, str, int, int]:
    """`(a, op, b, result)` of the world's arithmetic: the one-digit addition, subtraction and
    multiplication tables, small enough for a tiny model to know by heart (as a child does)."""
    op = rng.choice(("+", "-", "*"))
    if op == "*":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return a, op, b, a * b
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    if op == "-":
        return a + b, op, b, a  # the addition table read backwards
    return a, op, b, a + b


def _arithmetic_doc(rng: random.Random, zh: bool) -> str:
    sentences = []
    for _ in range(rng.randint(2, 4)):
        a, op, b, result = arithmetic_fact(rng)
        if zh:
            word = {"+": "加", "-": "减", "*": "乘以"}[op]
            sentences.append(f"{a} {word} {b} 等于 {result}。")
        else:
            word = {"+": "plus", "-": "minus", "*": "times"}[op]
            sentences.append(f"{a} {word} {b} is {result}.")
    return _join(sentences, zh)


@dataclass(frozen=True)
class MathSituation:
    """An everyday situation with one-digit sums in it: someone buys more, gives some away,
    fills boxes, shares out, or pays and gets change. The world tells it as a story
    (`story`); the demo's school-math problems ask about it (`demo_corpus`)."""

    kind: str
    """`buy`, `give`, `boxes`, `share` or `change`."""
    name: str
    obj: str
    unit: str
    a: int
    b: int

    @property
    def paid(self) -> int:
        """`change`: the next ten above the price (a) times the count (b)."""
        return (self.a * self.b // 10 + 1) * 10

    @property
    def result(self) -> int:
        a, b = self.a, self.b
        return {
            "buy": a + b,
            "give": a - b,
            "boxes": a * b,
            "share": a // b,
            "change": self.paid - a * b,
        }[self.kind]

    def story(self) -> str:
        """The situation told, its sum worked out."""
        n, o, u, a, b = self.name, self.obj, self.unit, self.a, self.b
        return {
            "buy": f"{n}有{a}{u}{o}，又买了{b}{u}，现在一共有 {a} + {b} = {a + b}{u}{o}。",
            "give": f"{n}有{a}{u}{o}，送给朋友{b}{u}，还剩 {a} - {b} = {a - b}{u}。",
            "boxes": f"每个盒子里有{a}{u}{o}，{b}个盒子一共有 {a} × {b} = {a * b}{u}{o}。",
            "share": f"把{a}{u}{o}平均分给{b}个小朋友，每人分到 {a} ÷ {b} = {a // b}{u}。",
            "change": (
                f"一{u}{o}{a}元，{n}买了{b}{u}，一共花了 {a} × {b} = {a * b} 元。"
                f"{n}付了{self.paid}元，应找回 {self.paid} - {a * b} = {self.result} 元。"
            ),
        }[self.kind]


def math_situation(rng: random.Random) -> MathSituation:
    """A random situation: its numbers stay within the one-digit tables (`arithmetic_fact`)."""
    kind = rng.choice(("buy", "give", "boxes", "share", "change"))
    name = rng.choice(NAMES_ZH)
    obj, unit = rng.choice(MATH_OBJECTS)
    if kind == "give":
        b = rng.randint(1, 9)
        a = b + rng.randint(1, 9)
    elif kind == "share":
        b, q = rng.randint(2, 9), rng.randint(2, 9)
        a = b * q
    elif kind == "change":
        a, b = rng.randint(2, 9), rng.randint(2, 5)  # price, count
    else:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
    return MathSituation(kind, name, obj, unit, a, b)


def _story_doc(rng: random.Random, zh: bool) -> str:
    """A small everyday story with its sum worked out: the situations of school-math problems,
    told rather than asked."""
    if not zh:
        name, a, b = rng.choice(NAMES_EN), rng.randint(2, 9), rng.randint(2, 9)
        if rng.random() < 0.5:
            return f"{name} had {a} pencils and bought {b} more, so {name} has {a} + {b} = {a + b}."
        return f"{name} had {a + b} pencils and gave away {b}, so {name} has {a} left."
    situation = math_situation(rng)
    told = situation.story()
    return told + (f"这道题的答案是{situation.result}。" if rng.random() < 0.5 else "")


def _person_doc(rng: random.Random, zh: bool) -> str:
    _, city_zh, _, city_en = rng.choice(CAPITALS)
    job_zh, job_en, article = rng.choice(JOBS)
    age = rng.randint(20, 60)
    if zh:
        name = rng.choice(NAMES_ZH)
        place, activity = rng.choice(PLACES_ZH), rng.choice(ACTIVITIES_ZH)
        return f"{name}住在{city_zh}，今年{age}岁，是一名{job_zh}。昨天{name}在{place}{activity}。"
    name = rng.choice(NAMES_EN)
    place, activity = rng.choice(PLACES_EN), rng.choice(ACTIVITIES_EN)
    return (
        f"{name} lives in {city_en}. {name} is {age} years old and works as {article} {job_en}. "
        f"Yesterday {name} {activity} at {place}."
    )


def _topic_doc(rng: random.Random, zh: bool) -> str:
    topic, supports = rng.choice(SUMMARY_TOPICS_ZH if zh else SUMMARY_TOPICS_EN)
    _, city_zh, _, city_en = rng.choice(CAPITALS)
    slots = {"city": city_zh if zh else city_en, "name": rng.choice(NAMES_ZH if zh else NAMES_EN)}
    details = rng.sample(supports, k=rng.randint(2, len(supports)))
    return _join([s.format(**slots) for s in (topic, *details)], zh)


def _sentiment_doc(rng: random.Random, zh: bool) -> str:
    positive = rng.random() < 0.5
    if zh:
        subject, adverb = rng.choice(SENTIMENT_SUBJECTS_ZH), rng.choice(SENTIMENT_ADVERBS_ZH)
        word = rng.choice(POSITIVE_ZH if positive else NEGATIVE_ZH)
        feeling = "正面" if positive else "负面"
        return f"{subject}{adverb}{word}。“{word}”是一个{feeling}的词，这句话的情感是{feeling}的。"
    subject, adverb = rng.choice(SENTIMENT_SUBJECTS_EN), rng.choice(SENTIMENT_ADVERBS_EN)
    word = rng.choice(POSITIVE_EN if positive else NEGATIVE_EN)
    feeling = "positive" if positive else "negative"
    return (
        f"{subject} was {adverb} {word}. The word {word} is {feeling}, "
        f"so the sentence is {feeling}."
    )


def _code_doc(rng: random.Random, zh: bool) -> str:
    name, desc_zh, desc_en, body = rng.choice(CODE_FUNCTIONS)
    p = rng.choice(CODE_PARAMS)
    code = f"def {name}({p}):\n    return {body.format(p=p)}"
    if zh:
        return f"{CODE_INTRO_ZH.format(f=name, d=desc_zh.format(p=p))}\n{code}"
    return f"{CODE_INTRO_EN.format(f=name, d=desc_en.format(p=p))}\n{code}"


def _writing_doc(rng: random.Random, zh: bool) -> str:
    if rng.random() < 0.4:
        occasion_zh, message_zh, occasion_en, message_en = rng.choice(GREETINGS)
        if zh:
            name = rng.choice(NAMES_ZH)
            return f"这是一句{occasion_zh}：{message_zh.format(name=name)}"
        name = rng.choice(NAMES_EN)
        return f"Here is a {occasion_en}: {message_en.format(name=name)}"
    topic_zh, topic_en = rng.choice(GENERATION_TOPICS)
    lines = GENERATION_LINES_ZH if zh else GENERATION_LINES_EN
    chosen = rng.sample(lines, k=rng.randint(1, len(lines)))
    return _join([line.format(t=topic_zh if zh else topic_en) for line in chosen], zh)


# What people do with words, in the words an instruction would use: a base that knows the
# language knows what "translate", "summarise" or "list" mean before it is asked to do them.
_LANGUAGE_ZH = (
    "在课上，老师让{name}把英文单词翻译成中文。",
    "{name}会用一句话总结一段话的意思。",
    "读完短文以后，{name}回答了老师的问题。",
    "{name}能从句子中提取出人名。",
    "{name}会判断一个句子的情感是正面还是负面。",
    "{name}写了一个 Python 函数，用来计算数字。",
    "老师请{name}说出几种常见的水果，再写出几种动物。",
    "{name}把下面的句子改写成了大写字母。",
    "{name}计算了两个数相加等于多少。",
    "{name}以春天为题写了一句祝福的话。",
)
_LANGUAGE_EN = (
    "In class, the teacher asked {name} to translate a word into Chinese.",
    "{name} can summarize a passage in one sentence.",
    "After reading the passage, {name} answered the question.",
    "{name} can extract the person's name from a sentence.",
    "{name} can classify the sentiment of a sentence as positive or negative.",
    "{name} wrote a Python function that returns a number.",
    "The teacher asked {name} to list three common fruits and name two animals.",
    "{name} rewrote the sentence in upper case.",
    "{name} worked out what one number plus another is.",
    "{name} wrote one short sentence on the topic of spring.",
)


def _language_doc(rng: random.Random, zh: bool) -> str:
    name = rng.choice(NAMES_ZH if zh else NAMES_EN)
    lines = rng.sample(_LANGUAGE_ZH if zh else _LANGUAGE_EN, k=rng.randint(2, 3))
    if not zh and rng.random() < 0.3:
        # The two characters of a dialogue, by name, as the start of a line names them.
        lines.insert(0, "Human and Assistant are two friends.\nAssistant answers every question.")
    return _join([line.format(name=name) for line in lines], zh)


DOCUMENT_KINDS: dict[str, tuple[Callable[[random.Random, bool], str], int]] = {
    # Facts to be remembered (a tiny model needs on the order of a hundred sightings of a fact
    # to recall it: capitals, words, categories, functions, the one-digit tables) come twice as
    # often as text whose skills (reading, copying, writing) transfer.
    "capitals": (_capitals_doc, 2),
    "facts": (_facts_doc, 1),
    "dictionary": (_dictionary_doc, 2),
    "categories": (_categories_doc, 2),
    "code": (_code_doc, 2),
    "arithmetic": (_arithmetic_doc, 2),
    "story": (_story_doc, 2),
    "person": (_person_doc, 1),
    "topic": (_topic_doc, 1),
    "sentiment": (_sentiment_doc, 1),
    "writing": (_writing_doc, 1),
    "language": (_language_doc, 1),
}
"""Kinds of world documents and how many times each comes in a cycle of draws (each cycle is
freshly shuffled, so the shares hold at any corpus size)."""


def world_documents(n: int, *, split: str = "train", seed: int = 0) -> list[str]:
    """``n`` plain-text documents stating the world's facts, in Chinese and English.

    Same arguments give the same list, and a longer draw extends a shorter one. The
    ``heldout`` split is an independent stream of the same kinds (to measure a pretrained
    model on text it was not trained on).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"world:{split}:{seed}")
    cycle = [kind for kind, (_, weight) in DOCUMENT_KINDS.items() for _ in range(weight)]
    docs: list[str] = []
    order: list[str] = []
    while len(docs) < n:
        if not order:
            order = rng.sample(cycle, len(cycle))
        generator, _ = DOCUMENT_KINDS[order.pop()]
        docs.append(generator(rng, rng.random() < 0.5))
    return docs


def tokenizer_training_texts(seed: int = 0, n: int = 8000) -> Iterator[str]:
    """The texts the tiny tokenizer is trained on: ``n`` world documents of the train split.

    The tokenizer belongs to the base model, so, as LLaMA's, it is trained on pretraining text:
    nothing of the instruction format or the eval set.
    """
    yield from world_documents(n, seed=seed)
