// Package text turns raw text into the input of a text model: the
// tokenizer that a model's tensor.TextSpec describes, shared by the
// agent's training data and its /v1/predict, so a model sees the same ids
// for the same text wherever it runs.
//
// The tokenizer lower-cases (Unicode simple case folding to lower case,
// unicode.ToLower), splits words, and maps every word and word n-gram to
// an id with the hashing trick: id = FNV-1a-64(UTF-8 bytes) mod vocab, an
// n-gram being its words joined by single spaces ("new york"). The hash
// has no seed, so ids are the same on every host, build and run, and
// agents never exchange a vocabulary. Distinct tokens may share an id (a
// collision); a larger vocabulary makes that rarer.
//
// A word is a maximal run of letters, digits and combining marks
// (unicode.IsLetter, IsNumber, IsMark); every other rune separates words,
// apostrophes and hyphens included ("don't" is "don", "t"). A rune of a
// script written without spaces between words (Han, Hiragana, Katakana)
// is a word by itself. Text that is not valid UTF-8 decodes to U+FFFD,
// which separates words. No Unicode normalization is done: "é" as one
// code point and as "e" plus a combining accent hash differently.
//
// A model's input is a fixed number of places (the spec's Input[0]): the
// ids in text order, each word's id followed by those of the n-grams that
// end at it (longest last), cut at the places available and padded with
// tensor.PadID.
package text
