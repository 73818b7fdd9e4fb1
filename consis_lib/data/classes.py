"""The hand-curated class table of the embedded image set.

Every class names its WordNet 3.0 noun synset explicitly (``"dog.n.01"``) together
with the ImageNet-style WNID (``"n02084071"``, ``"n" + 8-digit synset offset``).
An automatic first-sense lookup goes wrong surprisingly often (badger -> a
Wisconsinite, seal -> sealing wax, ram -> random-access memory, turtle ->
turtleneck), so each entry below was checked by hand against its WordNet gloss and
``tests/test_classes.py`` checks that every WNID resolves to the intended synset.

Each class is drawn by one emoji code point that all four independent sprite
styles of :mod:`consis_lib.data.sprites` provide (Twemoji, OpenMoji, Noto Color
Emoji, Symbola).  Classes whose emoji is newer than the Symbola font were left out
so that every class has at least four styles.

The order of :data:`PRIORITY` decides which classes the small profiles use: the
first 8 are the ``smoke`` set, the first 24 the ``default`` set.  Both contain
sibling pairs (dog/wolf/fox, cat/tiger, car/cab/ambulance, banana/apple/pear) so
that the WordNet correlation matrix of Eq. 2 has structure: the pairwise
distances include 2 and reach 12 or more.

Example
-------
>>> from consis_lib.data.classes import classes_for_profile
>>> [c.name for c in classes_for_profile("smoke")][:3]
['dog', 'wolf', 'cat']
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from consis_lib.errors import ConsisError

__all__ = ["CuratedClass", "CLASSES", "PRIORITY", "PROFILE_SIZES", "classes_for_profile", "class_by_wnid"]


@dataclass(frozen=True)
class CuratedClass:
    """One concept of the embedded image set.

    Attributes
    ----------
    wnid : str
        ImageNet-style WordNet 3.0 noun id, ``"n%08d" % synset.offset()``.
    synset_name : str
        The intended nltk synset name, e.g. ``"dog.n.01"``.
    name : str
        Short human-readable name used in figures.
    group : str
        Coarse group (mammal, bird, fruit, road vehicle, ...), for the book's tables.
    emoji : str
        Hex Unicode code point(s) of the emoji drawing the concept, ``"1F415"``;
        several code points are joined by ``"-"``.
    """

    wnid: str
    synset_name: str
    name: str
    group: str
    emoji: str

    @property
    def char(self) -> str:
        """The emoji as a Python string (``"\\U0001F415"``)."""
        return "".join(chr(int(part, 16)) for part in self.emoji.split("-"))


CLASSES: tuple[CuratedClass, ...] = (
    CuratedClass("n02084071", "dog.n.01", "dog", "mammal", "1F415"),
    CuratedClass("n02114100", "wolf.n.01", "wolf", "mammal", "1F43A"),
    CuratedClass("n02118333", "fox.n.01", "fox", "mammal", "1F98A"),
    CuratedClass("n02113335", "poodle.n.01", "poodle", "mammal", "1F429"),
    CuratedClass("n02121620", "cat.n.01", "cat", "mammal", "1F408"),
    CuratedClass("n02129604", "tiger.n.02", "tiger", "mammal", "1F405"),
    CuratedClass("n02128385", "leopard.n.02", "leopard", "mammal", "1F406"),
    CuratedClass("n02129165", "lion.n.01", "lion", "mammal", "1F981"),
    CuratedClass("n02374451", "horse.n.01", "horse", "mammal", "1F40E"),
    CuratedClass("n02391049", "zebra.n.01", "zebra", "mammal", "1F993"),
    CuratedClass("n02402425", "cattle.n.01", "cow", "mammal", "1F404"),
    CuratedClass("n02402175", "ox.n.02", "ox", "mammal", "1F402"),
    CuratedClass("n02408429", "water_buffalo.n.01", "water buffalo", "mammal", "1F403"),
    CuratedClass("n02395406", "hog.n.03", "pig", "mammal", "1F416"),
    CuratedClass("n02396427", "wild_boar.n.01", "wild boar", "mammal", "1F417"),
    CuratedClass("n02411705", "sheep.n.01", "sheep", "mammal", "1F411"),
    CuratedClass("n02412080", "ram.n.05", "ram", "mammal", "1F40F"),
    CuratedClass("n02416519", "goat.n.01", "goat", "mammal", "1F410"),
    CuratedClass("n02437312", "arabian_camel.n.01", "dromedary", "mammal", "1F42A"),
    CuratedClass("n02437482", "bactrian_camel.n.01", "bactrian camel", "mammal", "1F42B"),
    CuratedClass("n02503517", "elephant.n.01", "elephant", "mammal", "1F418"),
    CuratedClass("n02391994", "rhinoceros.n.01", "rhinoceros", "mammal", "1F98F"),
    CuratedClass("n02439033", "giraffe.n.01", "giraffe", "mammal", "1F992"),
    CuratedClass("n02430045", "deer.n.01", "deer", "mammal", "1F98C"),
    CuratedClass("n02330245", "mouse.n.01", "mouse", "mammal", "1F401"),
    CuratedClass("n02331046", "rat.n.01", "rat", "mammal", "1F400"),
    CuratedClass("n02324045", "rabbit.n.01", "rabbit", "mammal", "1F407"),
    CuratedClass("n02360282", "chipmunk.n.01", "chipmunk", "mammal", "1F43F"),
    CuratedClass("n01893825", "hedgehog.n.02", "hedgehog", "mammal", "1F994"),
    CuratedClass("n02139199", "bat.n.01", "bat", "mammal", "1F987"),
    CuratedClass("n02484322", "monkey.n.01", "monkey", "mammal", "1F412"),
    CuratedClass("n02480855", "gorilla.n.01", "gorilla", "mammal", "1F98D"),
    CuratedClass("n01882714", "koala.n.01", "koala", "mammal", "1F428"),
    CuratedClass("n02510455", "giant_panda.n.01", "panda", "mammal", "1F43C"),
    CuratedClass("n02131653", "bear.n.01", "bear", "mammal", "1F43B"),
    CuratedClass("n01792158", "cock.n.04", "rooster", "bird", "1F413"),
    CuratedClass("n01791625", "chicken.n.02", "chicken", "bird", "1F414"),
    CuratedClass("n01794158", "turkey.n.01", "turkey", "bird", "1F983"),
    CuratedClass("n01846331", "duck.n.01", "duck", "bird", "1F986"),
    CuratedClass("n01613294", "eagle.n.01", "eagle", "bird", "1F985"),
    CuratedClass("n01621127", "owl.n.01", "owl", "bird", "1F989"),
    CuratedClass("n02055803", "penguin.n.01", "penguin", "bird", "1F427"),
    CuratedClass("n01812337", "dove.n.01", "dove", "bird", "1F54A"),
    CuratedClass("n01792042", "chick.n.01", "chick", "bird", "1F424"),
    CuratedClass("n01662784", "turtle.n.02", "turtle", "reptile and amphibian", "1F422"),
    CuratedClass("n01726692", "snake.n.01", "snake", "reptile and amphibian", "1F40D"),
    CuratedClass("n01674464", "lizard.n.01", "lizard", "reptile and amphibian", "1F98E"),
    CuratedClass("n01697178", "crocodile.n.01", "crocodile", "reptile and amphibian", "1F40A"),
    CuratedClass("n01639765", "frog.n.01", "frog", "reptile and amphibian", "1F438"),
    CuratedClass("n01713764", "tyrannosaur.n.01", "tyrannosaur", "reptile and amphibian", "1F996"),
    CuratedClass("n01708998", "sauropod.n.01", "sauropod", "reptile and amphibian", "1F995"),
    CuratedClass("n02062744", "whale.n.02", "whale", "sea animal", "1F40B"),
    CuratedClass("n02068974", "dolphin.n.02", "dolphin", "sea animal", "1F42C"),
    CuratedClass("n01482330", "shark.n.01", "shark", "sea animal", "1F988"),
    CuratedClass("n01970164", "octopus.n.02", "octopus", "sea animal", "1F419"),
    CuratedClass("n01971280", "squid.n.02", "squid", "sea animal", "1F991"),
    CuratedClass("n01976957", "crab.n.01", "crab", "sea animal", "1F980"),
    CuratedClass("n01986806", "shrimp.n.03", "shrimp", "sea animal", "1F990"),
    CuratedClass("n02655020", "puffer.n.02", "pufferfish", "sea animal", "1F421"),
    CuratedClass("n02512053", "fish.n.01", "fish", "sea animal", "1F41F"),
    CuratedClass("n02206856", "bee.n.01", "bee", "invertebrate", "1F41D"),
    CuratedClass("n02165456", "ladybug.n.01", "ladybug", "invertebrate", "1F41E"),
    CuratedClass("n02274259", "butterfly.n.01", "butterfly", "invertebrate", "1F98B"),
    CuratedClass("n02219486", "ant.n.01", "ant", "invertebrate", "1F41C"),
    CuratedClass("n01772222", "spider.n.01", "spider", "invertebrate", "1F577"),
    CuratedClass("n01770393", "scorpion.n.03", "scorpion", "invertebrate", "1F982"),
    CuratedClass("n01944390", "snail.n.01", "snail", "invertebrate", "1F40C"),
    CuratedClass("n02229544", "cricket.n.01", "cricket", "invertebrate", "1F997"),
    CuratedClass("n02309337", "caterpillar.n.01", "caterpillar", "invertebrate", "1F41B"),
    CuratedClass("n07753592", "banana.n.02", "banana", "fruit", "1F34C"),
    CuratedClass("n07739125", "apple.n.01", "apple", "fruit", "1F34E"),
    CuratedClass("n07767847", "pear.n.01", "pear", "fruit", "1F350"),
    CuratedClass("n07747607", "orange.n.01", "orange", "fruit", "1F34A"),
    CuratedClass("n07749582", "lemon.n.01", "lemon", "fruit", "1F34B"),
    CuratedClass("n07756951", "watermelon.n.02", "watermelon", "fruit", "1F349"),
    CuratedClass("n07758680", "grape.n.01", "grape", "fruit", "1F347"),
    CuratedClass("n07745940", "strawberry.n.01", "strawberry", "fruit", "1F353"),
    CuratedClass("n07757132", "cherry.n.03", "cherry", "fruit", "1F352"),
    CuratedClass("n07751004", "peach.n.03", "peach", "fruit", "1F351"),
    CuratedClass("n07753275", "pineapple.n.02", "pineapple", "fruit", "1F34D"),
    CuratedClass("n07763629", "kiwi.n.03", "kiwi", "fruit", "1F95D"),
    CuratedClass("n07772935", "coconut.n.02", "coconut", "fruit", "1F965"),
    CuratedClass("n07755411", "melon.n.01", "melon", "fruit", "1F348"),
    CuratedClass("n07734017", "tomato.n.01", "tomato", "fruit", "1F345"),
    CuratedClass("n07764847", "avocado.n.01", "avocado", "fruit", "1F951"),
    CuratedClass("n07730207", "carrot.n.03", "carrot", "vegetable", "1F955"),
    CuratedClass("n13133613", "ear.n.05", "ear of corn", "vegetable", "1F33D"),
    CuratedClass("n07714990", "broccoli.n.02", "broccoli", "vegetable", "1F966"),
    CuratedClass("n07713074", "eggplant.n.01", "eggplant", "vegetable", "1F346"),
    CuratedClass("n07710616", "potato.n.01", "potato", "vegetable", "1F954"),
    CuratedClass("n07721456", "chili.n.02", "chili pepper", "vegetable", "1F336"),
    CuratedClass("n07718472", "cucumber.n.02", "cucumber", "vegetable", "1F952"),
    CuratedClass("n07734744", "mushroom.n.05", "mushroom", "vegetable", "1F344"),
    CuratedClass("n07772274", "chestnut.n.03", "chestnut", "vegetable", "1F330"),
    CuratedClass("n07737745", "peanut.n.04", "peanut", "vegetable", "1F95C"),
    CuratedClass("n07873807", "pizza.n.01", "pizza", "food", "1F355"),
    CuratedClass("n07697100", "hamburger.n.01", "hamburger", "food", "1F354"),
    CuratedClass("n07697537", "hotdog.n.02", "hot dog", "food", "1F32D"),
    CuratedClass("n07691650", "crescent_roll.n.01", "croissant", "food", "1F950"),
    CuratedClass("n07639069", "doughnut.n.02", "doughnut", "food", "1F369"),
    CuratedClass("n07695742", "pretzel.n.01", "pretzel", "food", "1F968"),
    CuratedClass("n07880751", "taco.n.02", "taco", "food", "1F32E"),
    CuratedClass("n07880968", "burrito.n.01", "burrito", "food", "1F32F"),
    CuratedClass("n07850329", "cheese.n.01", "cheese", "food", "1F9C0"),
    CuratedClass("n02958343", "car.n.01", "car", "road vehicle", "1F697"),
    CuratedClass("n02930766", "cab.n.03", "taxi", "road vehicle", "1F695"),
    CuratedClass("n02701002", "ambulance.n.01", "ambulance", "road vehicle", "1F691"),
    CuratedClass("n03141065", "cruiser.n.01", "police car", "road vehicle", "1F693"),
    CuratedClass("n02924116", "bus.n.01", "bus", "road vehicle", "1F68C"),
    CuratedClass("n03345487", "fire_engine.n.01", "fire engine", "road vehicle", "1F692"),
    CuratedClass("n04467665", "trailer_truck.n.01", "trailer truck", "road vehicle", "1F69B"),
    CuratedClass("n04465501", "tractor.n.01", "tractor", "road vehicle", "1F69C"),
    CuratedClass("n03790512", "motorcycle.n.01", "motorcycle", "road vehicle", "1F3CD"),
    CuratedClass("n02834778", "bicycle.n.01", "bicycle", "road vehicle", "1F6B2"),
    CuratedClass("n04149374", "scooter.n.02", "kick scooter", "road vehicle", "1F6F4"),
    CuratedClass("n04310018", "steam_locomotive.n.01", "steam locomotive", "road vehicle", "1F682"),
    CuratedClass("n03769881", "minibus.n.01", "minibus", "road vehicle", "1F690"),
    CuratedClass("n04037443", "racer.n.02", "race car", "road vehicle", "1F3CE"),
    CuratedClass("n03791053", "motor_scooter.n.01", "motor scooter", "road vehicle", "1F6F5"),
    CuratedClass("n04487081", "trolleybus.n.01", "trolleybus", "road vehicle", "1F68E"),
    CuratedClass("n02691156", "airplane.n.01", "airplane", "aircraft and boat", "2708"),
    CuratedClass("n03512147", "helicopter.n.01", "helicopter", "aircraft and boat", "1F681"),
    CuratedClass("n04273569", "speedboat.n.01", "speedboat", "aircraft and boat", "1F6A4"),
    CuratedClass("n04128499", "sailboat.n.01", "sailboat", "aircraft and boat", "26F5"),
    CuratedClass("n02951358", "canoe.n.01", "canoe", "aircraft and boat", "1F6F6"),
    CuratedClass("n04194289", "ship.n.01", "ship", "aircraft and boat", "1F6A2"),
    CuratedClass("n03329663", "ferry.n.01", "ferry", "aircraft and boat", "26F4"),
    CuratedClass("n03673027", "liner.n.04", "ocean liner", "aircraft and boat", "1F6F3"),
    CuratedClass("n03790230", "motorboat.n.01", "motorboat", "aircraft and boat", "1F6E5"),
    CuratedClass("n02709367", "anchor.n.01", "anchor", "aircraft and boat", "2693"),
    CuratedClass("n02782093", "balloon.n.01", "balloon", "aircraft and boat", "1F388"),
    CuratedClass("n04099429", "rocket.n.01", "rocket", "aircraft and boat", "1F680"),
    CuratedClass("n03467517", "guitar.n.01", "guitar", "instrument", "1F3B8"),
    CuratedClass("n04536866", "violin.n.01", "violin", "instrument", "1F3BB"),
    CuratedClass("n03110669", "cornet.n.01", "trumpet", "instrument", "1F3BA"),
    CuratedClass("n04141076", "sax.n.02", "saxophone", "instrument", "1F3B7"),
    CuratedClass("n03249569", "drum.n.01", "drum", "instrument", "1F941"),
    CuratedClass("n02824448", "bell.n.01", "bell", "instrument", "1F514"),
    CuratedClass("n03759954", "microphone.n.01", "microphone", "instrument", "1F3A4"),
    CuratedClass("n02992529", "cellular_telephone.n.01", "mobile phone", "device", "1F4F1"),
    CuratedClass("n03642806", "laptop.n.01", "laptop", "device", "1F4BB"),
    CuratedClass("n03180011", "desktop_computer.n.01", "desktop computer", "device", "1F5A5"),
    CuratedClass("n03085013", "computer_keyboard.n.01", "computer keyboard", "device", "2328"),
    CuratedClass("n03793489", "mouse.n.04", "computer mouse", "device", "1F5B1"),
    CuratedClass("n04004475", "printer.n.03", "printer", "device", "1F5A8"),
    CuratedClass("n02942699", "camera.n.01", "camera", "device", "1F4F7"),
    CuratedClass("n04405907", "television_receiver.n.01", "television", "device", "1F4FA"),
    CuratedClass("n04043733", "radio_receiver.n.01", "radio", "device", "1F4FB"),
    CuratedClass("n04401088", "telephone.n.01", "telephone", "device", "260E"),
    CuratedClass("n02694662", "alarm_clock.n.01", "alarm clock", "device", "23F0"),
    CuratedClass("n04555897", "watch.n.01", "watch", "device", "231A"),
    CuratedClass("n03665924", "light_bulb.n.01", "light bulb", "device", "1F4A1"),
    CuratedClass("n03359137", "flashlight.n.01", "flashlight", "device", "1F526"),
    CuratedClass("n02810471", "battery.n.02", "battery", "device", "1F50B"),
    CuratedClass("n02948072", "candle.n.01", "candle", "device", "1F56F"),
    CuratedClass("n04403638", "telescope.n.01", "telescope", "device", "1F52D"),
    CuratedClass("n03760671", "microscope.n.01", "microscope", "device", "1F52C"),
    CuratedClass("n03209910", "diskette.n.01", "floppy disk", "device", "1F4BE"),
    CuratedClass("n03079230", "compact_disk.n.01", "compact disc", "device", "1F4BF"),
    CuratedClass("n03544143", "hourglass.n.01", "hourglass", "device", "231B"),
    CuratedClass("n03481172", "hammer.n.02", "hammer", "tool", "1F528"),
    CuratedClass("n04606574", "wrench.n.03", "wrench", "tool", "1F527"),
    CuratedClass("n04148054", "scissors.n.01", "scissors", "tool", "2702"),
    CuratedClass("n03613294", "key.n.01", "key", "tool", "1F511"),
    CuratedClass("n03874599", "padlock.n.01", "padlock", "tool", "1F512"),
    CuratedClass("n03158885", "dagger.n.01", "dagger", "tool", "1F5E1"),
    CuratedClass("n02879718", "bow.n.04", "bow", "tool", "1F3F9"),
    CuratedClass("n03929202", "pick.n.07", "pickaxe", "tool", "26CF"),
    CuratedClass("n04507155", "umbrella.n.01", "umbrella", "accessory", "2602"),
    CuratedClass("n02769748", "backpack.n.01", "backpack", "accessory", "1F392"),
    CuratedClass("n02774152", "bag.n.04", "handbag", "accessory", "1F45C"),
    CuratedClass("n02818832", "bed.n.01", "bed", "household", "1F6CF"),
    CuratedClass("n03221720", "door.n.01", "door", "household", "1F6AA"),
    CuratedClass("n02808440", "bathtub.n.01", "bathtub", "household", "1F6C1"),
    CuratedClass("n02705429", "amphora.n.01", "amphora", "household", "1F3FA"),
    CuratedClass("n03400231", "frying_pan.n.01", "frying pan", "household", "1F373"),
    CuratedClass("n04284002", "spoon.n.01", "spoon", "household", "1F944"),
    CuratedClass("n04592099", "wineglass.n.01", "wine glass", "household", "1F377"),
    CuratedClass("n02824058", "beer_mug.n.01", "beer mug", "household", "1F37A"),
    CuratedClass("n03191029", "die.n.01", "die", "toy", "1F3B2"),
    CuratedClass("n04487996", "trophy.n.02", "trophy", "toy", "1F3C6"),
    CuratedClass("n03595614", "jersey.n.03", "t-shirt", "clothing", "1F455"),
    CuratedClass("n03594734", "jean.n.01", "jeans", "clothing", "1F456"),
    CuratedClass("n03236735", "dress.n.01", "dress", "clothing", "1F457"),
    CuratedClass("n04254777", "sock.n.01", "sock", "clothing", "1F9E6"),
    CuratedClass("n03441112", "glove.n.02", "glove", "clothing", "1F9E4"),
    CuratedClass("n04143897", "scarf.n.01", "scarf", "clothing", "1F9E3"),
    CuratedClass("n03237416", "dress_hat.n.01", "top hat", "clothing", "1F3A9"),
    CuratedClass("n02799323", "baseball_cap.n.01", "baseball cap", "clothing", "1F9E2"),
    CuratedClass("n03138669", "crown.n.04", "crown", "clothing", "1F451"),
    CuratedClass("n04272054", "spectacles.n.01", "glasses", "clothing", "1F453"),
    CuratedClass("n04356056", "sunglasses.n.01", "sunglasses", "clothing", "1F576"),
    CuratedClass("n04120489", "running_shoe.n.01", "running shoe", "clothing", "1F45F"),
    CuratedClass("n02872752", "boot.n.01", "boot", "clothing", "1F462"),
    CuratedClass("n03617480", "kimono.n.01", "kimono", "clothing", "1F458"),
    CuratedClass("n04092609", "ring.n.08", "ring", "clothing", "1F48D"),
    CuratedClass("n04022332", "pump.n.03", "pump shoe", "clothing", "1F460"),
    CuratedClass("n04133789", "sandal.n.01", "sandal", "clothing", "1F461"),
    CuratedClass("n04254680", "soccer_ball.n.01", "soccer ball", "sport", "26BD"),
    CuratedClass("n02802426", "basketball.n.02", "basketball", "sport", "1F3C0"),
    CuratedClass("n03378765", "football.n.02", "american football", "sport", "1F3C8"),
    CuratedClass("n02799071", "baseball.n.02", "baseball", "sport", "26BE"),
    CuratedClass("n04409515", "tennis_ball.n.01", "tennis ball", "sport", "1F3BE"),
    CuratedClass("n04540053", "volleyball.n.02", "volleyball", "sport", "1F3D0"),
    CuratedClass("n02885462", "boxing_glove.n.01", "boxing glove", "sport", "1F94A"),
    CuratedClass("n03558404", "ice_skate.n.01", "ice skate", "sport", "26F8"),
    CuratedClass("n04228054", "ski.n.01", "ski", "sport", "1F3BF"),
    CuratedClass("n11842204", "cactus.n.01", "cactus", "plant", "1F335"),
    CuratedClass("n11978233", "sunflower.n.01", "sunflower", "plant", "1F33B"),
    CuratedClass("n12620196", "rose.n.01", "rose", "plant", "1F339"),
    CuratedClass("n12454159", "tulip.n.01", "tulip", "plant", "1F337"),
    CuratedClass("n12582231", "palm.n.03", "palm tree", "plant", "1F334"),
    CuratedClass("n12177844", "hibiscus.n.01", "hibiscus", "plant", "1F33A"),
    CuratedClass("n11752578", "clover.n.01", "clover", "plant", "1F340"),
    CuratedClass("n13108841", "conifer.n.01", "conifer", "plant", "1F332"),
    CuratedClass("n03544360", "house.n.01", "house", "building", "1F3E0"),
    CuratedClass("n02980441", "castle.n.02", "castle", "building", "1F3F0"),
    CuratedClass("n03028079", "church.n.02", "church", "building", "26EA"),
    CuratedClass("n03788195", "mosque.n.01", "mosque", "building", "1F54C"),
    CuratedClass("n03316406", "factory.n.01", "factory", "building", "1F3ED"),
    CuratedClass("n03540595", "hospital.n.01", "hospital", "building", "1F3E5"),
    CuratedClass("n04411264", "tent.n.01", "tent", "building", "26FA"),
    CuratedClass("n04460130", "tower.n.01", "tower", "building", "1F5FC"),
    CuratedClass("n04295881", "stadium.n.01", "stadium", "building", "1F3DF"),
    CuratedClass("n03388043", "fountain.n.01", "fountain", "building", "26F2"),
    CuratedClass("n04210390", "shrine.n.01", "shrine", "building", "26E9"),
    CuratedClass("n04374735", "synagogue.n.01", "synagogue", "building", "1F54D"),
    CuratedClass("n04587559", "windmill.n.01", "windmill", "building", "1F3A1"),
)

#: Synset names in the order the small profiles take them (smoke = first 8,
#: default = first 24); the remaining classes follow in table order.
PRIORITY: tuple[str, ...] = (
    # smoke: two sibling pairs per family plus far-apart families
    "dog.n.01", "wolf.n.01", "cat.n.01", "tiger.n.02",
    "car.n.01", "cab.n.03", "banana.n.02", "apple.n.01",
    # default adds the rest of the sibling triples and a spread of groups
    "fox.n.01", "ambulance.n.01", "pear.n.01", "lion.n.01",
    "horse.n.01", "zebra.n.01", "bus.n.01", "orange.n.01",
    "airplane.n.01", "helicopter.n.01", "sailboat.n.01", "guitar.n.01",
    "violin.n.01", "eagle.n.01", "owl.n.01", "cactus.n.01",
)

#: Number of classes per profile; 0 means every curated class.
PROFILE_SIZES: Mapping[str, int] = MappingProxyType({"smoke": 8, "default": 24, "full": 0})


def _ordered() -> list[CuratedClass]:
    by_name = {c.synset_name: c for c in CLASSES}
    first = [by_name[s] for s in PRIORITY]
    chosen = set(PRIORITY)
    return first + [c for c in CLASSES if c.synset_name not in chosen]


def classes_for_profile(profile: Any, num_classes: int | None = None) -> list[CuratedClass]:
    """The curated classes a profile uses, in a fixed order.

    Parameters
    ----------
    profile : str or DataConfig
        ``"smoke"``, ``"default"`` or ``"full"``; a :class:`~consis_lib.config.DataConfig`
        contributes both its ``profile`` and its ``num_classes``.
    num_classes : int, optional
        Override of the class count; ``0`` means all curated classes.  When omitted
        the DataConfig's ``num_classes`` (if given) or the profile's size is used.

    Returns
    -------
    list of CuratedClass
        ``num_classes`` classes: the :data:`PRIORITY` classes first, then the rest
        of :data:`CLASSES` in table order.

    Examples
    --------
    >>> len(classes_for_profile("default"))
    24
    >>> len(classes_for_profile("full")) == len(CLASSES)
    True
    """
    if not isinstance(profile, str):
        if num_classes is None:
            num_classes = int(getattr(profile, "num_classes"))
        profile = str(getattr(profile, "profile"))
    if profile not in PROFILE_SIZES:
        raise ConsisError(
            f"profile {profile!r} has no embedded class list; use one of "
            f"{', '.join(PROFILE_SIZES)} (the paper profile reads a folder)"
        )
    n = PROFILE_SIZES[profile] if num_classes is None else int(num_classes)
    ordered = _ordered()
    if n < 0 or n > len(ordered):
        raise ConsisError(
            f"num_classes={n} is out of range; choose 1..{len(ordered)} or 0 for all curated classes"
        )
    return ordered if n == 0 else ordered[:n]


def class_by_wnid(wnid: str) -> CuratedClass:
    """Look a curated class up by its WNID (ConsisError when it is not curated)."""
    for c in CLASSES:
        if c.wnid == wnid:
            return c
    raise ConsisError(f"{wnid} is not a curated class; see consis_lib/data/classes.py for the table")
