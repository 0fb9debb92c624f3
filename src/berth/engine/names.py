"""docker-style generated container names (adjective_surname) and IDs."""

from __future__ import annotations

import os

ADJECTIVES = (
    "admiring adoring affectionate agitated amazing angry awesome beautiful blissful bold boring "
    "brave busy charming clever compassionate competent condescending confident cool cranky crazy "
    "dazzling determined distracted dreamy eager ecstatic elastic elated elegant eloquent epic "
    "exciting fervent festive flamboyant focused friendly frosty funny gallant gifted goofy gracious "
    "great happy hardcore heuristic hopeful hungry infallible inspiring intelligent interesting "
    "jolly jovial keen kind laughing loving lucid magical modest musing mystifying naughty nervous "
    "nice nifty nostalgic objective optimistic peaceful pedantic pensive practical priceless quirky "
    "quizzical recursing relaxed reverent romantic sad serene sharp silly sleepy stoic strange "
    "stupefied suspicious sweet tender thirsty trusting unruffled upbeat vibrant vigilant vigorous "
    "wizardly wonderful xenodochial youthful zealous zen"
).split()
SURNAMES = (
    "albattani allen almeida archimedes ardinghelli aryabhata austin babbage banach bardeen bartik "
    "bassi bell benz bhabha bhaskara blackwell bohr booth borg bose boyd brahmagupta brattain brown "
    "carson cerf chandrasekhar chaplygin chatelet chatterjee chebyshev clarke cohen curie darwin "
    "davinci dijkstra dirac driscoll dubinsky easley edison einstein elbakyan elgamal elion ellis "
    "engelbart euclid euler faraday feistel fermat fermi feynman franklin gagarin galileo galois "
    "gates gauss germain goldberg goldstine goldwasser golick goodall gould greider grothendieck "
    "haibt hamilton haslett hawking heisenberg hellman hermann herschel hertz heyrovsky hodgkin "
    "hofstadter hoover hopper hugle hypatia jackson jang jennings jepsen johnson joliot jones kalam "
    "kapitsa kare keldysh keller kepler khorana kilby kirch knuth kowalevski lalande lamarr lamport "
    "leakey leavitt lederberg lehmann lewin lichterman liskov lovelace lumiere mahavira margulis "
    "matsumoto maxwell mayer mccarthy mcclintock mclaren mclean mcnulty meitner mendel mendeleev "
    "merkle mestorf mirzakhani montalcini moore morse moser murdock napier nash neumann newton "
    "nightingale nobel noether northcutt noyce panini pare pascal pasteur payne perlman pike "
    "poincare poitras proskuriakova ptolemy raman ramanujan rhodes ride ritchie robinson roentgen "
    "rosalind rubin saha sammet sanderson satoshi shamir shannon shaw shirley shockley shtern sinoussi "
    "snyder solomon spence stonebraker sutherland swanson swartz swirles taussig tesla tharp thompson "
    "torvalds tu turing varahamihira vaughan villani visvesvaraya volhard wescoff wilbur wiles "
    "williams williamson wilson wing wozniak wright wu yalow yonath zhukovsky"
).split()


def new_id() -> str:
    """64 hex digits, like docker's container IDs."""
    return os.urandom(32).hex()


def _choice(items: tuple | list) -> str:
    return items[int.from_bytes(os.urandom(4), "big") % len(items)]


def generate_name(taken: set[str]) -> str:
    """A free adjective_surname; a numeric suffix after too many collisions."""
    for attempt in range(64):
        name = f"{_choice(ADJECTIVES)}_{_choice(SURNAMES)}"
        if attempt > 8:
            name += str(int.from_bytes(os.urandom(1), 'big') % 10)
        if name not in taken:
            return name
    return f"berth_{os.urandom(6).hex()}"
