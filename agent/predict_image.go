package agent

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/fedge/fedge/tensor/data"
)

// Bounds of an image upload to /v1/predict.
const (
	// MaxPredictImageBody bounds the body of an image upload (16 MiB, the
	// whole multipart body); larger bodies get 413.
	MaxPredictImageBody = 16 << 20
	// MaxPredictImages bounds the images of one multipart upload.
	MaxPredictImages = 64
	// MaxPredictImagePixels bounds the width × height an uploaded image
	// may declare (16.7 million); it is checked before the pixels are
	// decoded.
	MaxPredictImagePixels = 1 << 24
)

// Content types of image uploads.
const (
	uploadMultipart = "multipart/form-data"
	uploadPNG       = "image/png"
	uploadJPEG      = "image/jpeg"
)

// imageUpload returns the media type of a request that uploads images
// (multipart/form-data, image/png or image/jpeg), or "" for a JSON body.
func imageUpload(r *http.Request) string {
	t, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	switch t {
	case uploadMultipart, uploadPNG, uploadJPEG:
		return t
	}
	return ""
}

// predictImages answers an image upload: each image goes through the
// preprocessing an image dataset's files go through when the agent loads
// them (data.DecodeImage), sized to the served model's input.
func (s *inferenceServer) predictImages(w http.ResponseWriter, r *http.Request, cur *servedModel, kind string) {
	in := cur.model.Spec.Input
	if len(in) != 3 || (in[0] != 1 && in[0] != 3) {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("model %d takes input %v, not an image [channels height width] of 1 or 3 channels: send JSON inputs", cur.version, in))
		return
	}
	opts := data.ImageOptions{Channels: in[0], Height: in[1], Width: in[2], MaxPixels: MaxPredictImagePixels, Workers: 1}
	r.Body = http.MaxBytesReader(w, r.Body, MaxPredictImageBody)
	xp := getBuf[float32](&s.inputs)
	defer putBuf(&s.inputs, xp)
	x, n := (*xp)[:0], 0
	fail := func(what string, err error) {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes; send fewer or smaller images", MaxPredictImageBody))
		case errors.Is(err, data.ErrLimit):
			writeError(w, http.StatusRequestEntityTooLarge, what+": "+err.Error())
		default:
			writeError(w, http.StatusBadRequest, what+": "+err.Error())
		}
	}
	if kind != uploadMultipart {
		var err error
		if x, err = data.DecodeImage(x, r.Body, opts); err != nil {
			*xp = x
			fail("the image", err)
			return
		}
		n = 1
	} else {
		mr, err := r.MultipartReader()
		if err != nil {
			fail("multipart body", err)
			return
		}
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				fail("multipart body", err)
				return
			}
			if part.FormName() != "image" {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown form field %q: send each image as a field named \"image\"", part.FormName()))
				return
			}
			if n == MaxPredictImages {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("more than %d images; split the batch", MaxPredictImages))
				return
			}
			x, err = data.DecodeImage(x, part, opts)
			*xp = x
			if err != nil {
				fail(fmt.Sprintf("image %d (%q)", n, part.FileName()), err)
				return
			}
			n++
		}
	}
	*xp = x
	if n == 0 {
		writeError(w, http.StatusBadRequest, `no image: send a form field named "image", or an image/png or image/jpeg body`)
		return
	}
	s.answer(w, cur, x, n)
}
