"""Word lists of the built-in analyser (`ovi_bench.metrics.text_analysis.builtin`): ovi-bench's own general-English
closed classes, adjectives, verb forms and plurals."""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DETERMINERS = _words(
    "a an the this these those some any each every another no both all several many few various"
)
POSSESSIVES = _words("my your his its our their whose")
PERSONAL_PRONOUNS = _words(
    "i me you he him she it we us they them myself yourself himself herself itself ourselves themselves "
    "someone somebody something everyone everybody everything anyone anybody anything nobody nothing"
)
SUBJECT_PRONOUNS = _words("i you he she it we they who which that someone somebody everyone everybody nobody")
OTHER_PRONOUNS = _words("who whom which what there whatever whoever")
NUMBER_WORDS = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand dozen"
)
ADPOSITIONS = _words(
    "of on in at by with without to from into onto upon under underneath beneath over above below behind beside "
    "besides between among amongst across through throughout toward towards around about against along alongside "
    "inside outside within near past off up down out for during after before like unlike than via atop amid amidst "
    "beyond per except despite"
)
COORDINATORS = _words("and or but nor &")
SUBORDINATORS = _words(
    "while as because if when whenever where wherever though although since until unless whereas whether once"
)
BE_FORMS = _words("be am is are was were been being")
MODALS = _words("will would shall should can could may might must ca wo")
DO_FORMS = _words("do does did")
HAVE_FORMS = _words("have has had")
LINKING_VERBS = _words(
    "look looks looked looking seem seems seemed seeming appear appears appeared appearing feel feels felt feeling "
    "become becomes became becoming remain remains remained remaining stay stays stayed staying sit sits sat "
    "stand stands stood lie lies turn turns turned"
)
NEGATIONS = _words("not n't never")
ADVERBS = _words(
    "very quite rather too so also just still even almost nearly really only again always often sometimes soon "
    "later already ever perhaps maybe together away back here now then outdoors indoors upstairs downstairs "
    "overhead nearby ahead apart aside forward backward backwards upward upwards downward downwards everywhere "
    "somewhere anywhere there"
)
# Words ending in -ly that are not adverbs: nouns and adjectives.
LY_NOUNS = _words(
    "fly butterfly dragonfly firefly housefly belly jelly lily family holly bully ally rally tally assembly anomaly "
    "monopoly gully italy july supply reply apply rely imply comply multiply ply sly"
)
LY_ADJECTIVES = _words(
    "ugly curly lovely friendly silly jolly bubbly wobbly sparkly prickly woolly wooly chilly oily hilly lonely "
    "lively elderly cuddly early daily frilly scaly smelly steely costly deadly orderly ghostly leisurely stately "
    "timely likely unlikely burly surly pearly holy wiggly wrinkly squiggly crinkly knobbly bristly grisly"
)
COLOUR_ADJECTIVES = _words(
    "red orange yellow green blue purple pink brown black white gray grey silver golden gold beige violet indigo "
    "turquoise teal maroon navy crimson scarlet magenta cyan lavender ivory tan khaki olive amber bronze emerald "
    "coral azure aqua charcoal mauve ochre sepia rainbow-colored multicolored multicoloured colorful colourful "
    "pastel neon dark light pale bright vivid"
)
SHAPE_AND_SIZE_ADJECTIVES = _words(
    "round square rectangular triangular circular oval spherical cubic cylindrical conical pyramidal hexagonal "
    "pentagonal octagonal oblong elliptical curved flat pointed spiral wavy straight angular tubular boxy crooked "
    "rounded spiky heart-shaped star-shaped long short tall big small large tiny huge giant little wide narrow thick "
    "thin fat slim skinny chubby massive miniature mini enormous petite broad deep shallow high low slender "
    "compact bulky lengthy"
)
TEXTURE_AND_MATERIAL_ADJECTIVES = _words(
    "wooden metallic plastic fluffy furry woolen woollen silky velvety ceramic soft hard smooth rough shiny glossy "
    "matte fuzzy bumpy sticky slippery crisp crispy crunchy creamy grainy sandy rocky prickly hairy feathery knitted "
    "woven wrinkled polished rusty rusted worn scratchy lacy glittery transparent translucent opaque wet dry plush "
    "quilted padded tender flaky chewy juicy sleek coarse leathery rubbery glassy porous spongy jagged rugged "
    "textured cracked frosted icy slimy fibrous gritty lumpy downy satiny pebbly stony marbled striped spotted "
    "checkered dotted plaid floral patterned"
)
OTHER_ADJECTIVES = _words(
    "old new young ancient modern vintage fresh ripe rotten hot cold warm cool pretty cute beautiful handsome happy "
    "sad angry sleepy busy quiet loud heavy empty full clean dirty broken open closed sunny cloudy rainy snowy foggy "
    "stormy windy grand elegant fancy simple plain delicate sturdy cozy cosy comfortable gentle fierce wild tame lazy "
    "playful curious majestic sharp dull solid bare lush dense frozen misty dusty muddy shady sweet sour salty bitter "
    "spicy delicious tasty savory intricate ornate rustic antique shabby bold vibrant serene calm peaceful busy "
    "crowded lonely mysterious magical tired excited awestruck awe-struck amazed surprised scared nervous proud "
    "brave clever wise kind friendly strong weak fast slow quick rich poor famous strange weird funny silly "
    "graceful colossal vast endless steep gentle tranquil cheerful joyful glamorous luxurious cozy tidy messy "
    "hungry thirsty sick healthy alive dead real fake ready able unable whole entire single double various "
    "favorite favourite special same different other next last first second third main own favourite "
    "amazing stunning charming interesting striking dazzling loving caring boring right close plump perfect "
    "whitish reddish bluish greenish yellowish pinkish brownish greyish grayish purplish blackish stylish"
)
ADJECTIVES = (
    COLOUR_ADJECTIVES
    | SHAPE_AND_SIZE_ADJECTIVES
    | TEXTURE_AND_MATERIAL_ADJECTIVES
    | OTHER_ADJECTIVES
    | LY_ADJECTIVES
)
# Adjectives that work like determiners ("the other", "the same"): never joined to a following adjective by "and".
DETERMINER_LIKE_ADJECTIVES = _words(
    "other same next last first second third own different various whole entire single double main special "
    "favorite favourite real fake ready able unable alive dead"
)
COORDINABLE_ADJECTIVES = ADJECTIVES - DETERMINER_LIKE_ADJECTIVES
ADJECTIVE_SUFFIXES = ("ful", "ous", "ive", "able", "ible", "less", "ic", "ical", "esque")
NOT_ADJECTIVES_DESPITE_SUFFIX = _words(
    "music picnic traffic magic plastic fabric mosaic attic topic tunic relic clinic comic panic garlic tonic "
    "olive knive drive archive hive chive dish fish radish wish relish polish bus octopus cactus circus walrus "
    "vegetable vegetables timetable turntable constable syllable parable detective detectives locomotive "
    "executive relative arithmetic critic mechanic logic handful cupful mouthful spoonful "
    "platypus hippopotamus asparagus campus bonus virus citrus lotus"
)

# Verbs: base forms whose inflected forms (-s, -ed, -ing) count as verb cues. Irregular forms are listed separately.
VERB_BASES = _words(
    "hold carry play walk run sit stand feature contain show include lie lay rest look watch read write eat drink cook bake ride drive fly swim "
    "jump climb chase catch throw kick sleep wear hang lean float flow glide shine glow sparkle pour drip melt bloom "
    "grow plant paint draw build create make sing dance talk speak smile laugh cry hug kiss wave push pull open close "
    "fill cover wrap perch nestle curl stretch roll bounce spin twirl zoom speed race dash rush hurry wander stroll "
    "hike explore travel cross enter leave arrive follow lead guide support reflect illuminate contrast complement "
    "surround decorate adorn loom rise fall hover soar swoop dive splash sail row gaze stare peek peer wait smell "
    "taste sip chew bite lick sniff bark meow chirp sing hum whistle buzz graze feed hunt stalk prowl pounce crawl "
    "slither hop waddle gallop trot march skip skate ski surf sled jog sprint kneel crouch bend reach grab pick "
    "place put set hand give take bring send show point wear dress brush comb wash clean sweep mop scrub wipe dry "
    "iron fold sew knit weave mend fix repair cut chop slice dice stir mix whisk blend serve pour feed water prune "
    "rake dig mow harvest gather collect search find discover study learn teach practice practise perform train "
    "compete win celebrate cheer clap applaud admire enjoy love like hate want need try hope dream wonder marvel "
    "think imagine plan prepare wait listen hear see notice observe examine inspect check navigate steer pilot "
    "command stack pile lean drape tuck nestle snuggle cuddle sprawl lounge laze relax recline bask doze nap rest "
    "shelter shield protect hide cover block face overlook tower line border frame"
)
# Base forms that are far more often nouns: never a verb cue as bare words, and their -s forms are plural nouns.
NOUN_LIKE_VERB_BASES = _words(
    "watch drink cook plant paint race dash rush wave perch curl roll spin hand point dress brush comb iron dry "
    "cut slice dice mix water rake harvest study train search line border frame tower face block shelter shield "
    "cover leave set place sled ski skate surf hop fly lay trot march skip park stand"
)
IRREGULAR_VERB_FORMS = _words(
    "sat stood lay laid lain ran rode ridden drove driven flew flown swam swum ate eaten drank drunk held hung wore "
    "worn threw thrown caught took taken gave given made built drew drawn wrote written sang sung spoke spoken "
    "seen fell fallen rose risen grew grown shone spun slept swept crept leapt knelt bent cast spread sped fed led "
    "froze woke hid hidden bitten blew blown came come went gone sank sunk stuck struck dug swung clung flung "
    "sought brought bought thought taught found kept felt meant sent spent lent dealt lit slid stung "
    "tore torn wove cut became began begun burst chose chosen forgot put shut got gotten knew known strode "
    "stridden shook shaken sprang sprung stole stolen swore sworn rang rung beaten bore borne dove forgave "
    "shrank shrunk slung snuck spat strove strung swollen trod trodden wept wrung arose arisen awoke awoken bled "
    "fled fought overtook mistook spilt stank swept read"
)
# Words ending in -ed / -ing that are not verb forms.
NOT_ED_VERBS = _words(
    "bed red shed sled seed weed reed bred steed speed breed tweed need hundred sacred naked wicked rugged jagged ragged "
    "crooked beloved kindred embed bled fled sled coed"
)
NOT_ING_VERBS = _words(
    "thing ring king wing string spring swing sling sting ceiling building painting clothing earring pudding icing "
    "frosting filling stuffing dressing topping wedding morning evening ending railing lightning awning herring "
    "sibling duckling dumpling seedling sapling darling bowling drawing carving kindling shilling inning lining "
    "offering opening outing gathering meeting landing crossing clearing housing nothing something anything "
    "everything viking sterling starling gosling mooring piping siding decking flooring roofing fencing "
    "wing swimming-pool pudding cling during"
)

IRREGULAR_PLURALS = {
    "men": "man",
    "women": "woman",
    "people": "person",
    "children": "child",
    "mice": "mouse",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
    "oxen": "ox",
    "knives": "knife",
    "leaves": "leaf",
    "loaves": "loaf",
    "wolves": "wolf",
    "shelves": "shelf",
    "halves": "half",
    "calves": "calf",
    "scarves": "scarf",
    "lives": "life",
    "wives": "wife",
    "thieves": "thief",
    "shoes": "shoe",
    "toes": "toe",
    "canoes": "canoe",
    "horseshoes": "horseshoe",
    "dice": "die",
}
UNCOUNTED_NOUNS = _words("sheep fish deer shrimp moose series species aircraft salmon trout")
