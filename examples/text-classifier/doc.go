// Command text-classifier trains a text model centrally with fedge's
// engine: a fastText-style classifier (hashed words and n-grams, an
// embedding bag, a dense layer) on labelled documents, by default the
// topics of Debian's fortune cookies (apt-get install fortunes). It is the
// baseline of the federated text job, whose job file it can write.
//
//	go run ./examples/text-classifier
//	go run ./examples/text-classifier -ngrams 2 -epochs 20
//	go run ./examples/text-classifier -data tickets.jsonl -job job.json -save text.fedgemdl
//
// It prints the test accuracy after every epoch, then the predictions of
// a few test documents, tokenized by the same code agents use for
// training and for /v1/predict.
package main
