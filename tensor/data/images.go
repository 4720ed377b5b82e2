package data

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/image/draw"

	"github.com/fedge/fedge/tensor"
)

// Defaults and bounds of ImageOptions.
const (
	// DefaultImageWidth, DefaultImageHeight and DefaultImageChannels are
	// the target of a zero ImageOptions: MNIST's 28×28 gray, the input of
	// the named models (tensor.NamedSpec).
	DefaultImageWidth    = 28
	DefaultImageHeight   = 28
	DefaultImageChannels = 1
	// DefaultMaxImages bounds the files ReadImageFolder reads (1,048,576).
	// The dataset holds images × width × height × channels float32 values:
	// 3.3 GB for a million 28×28 gray images.
	DefaultMaxImages = 1 << 20
	// DefaultMaxImagePixels bounds the width × height a file's header may
	// declare (33.5 million, an 8K frame): it is checked before the pixels
	// are decoded, so a small file that declares a huge image (a
	// decompression bomb) is refused without allocating it.
	DefaultMaxImagePixels = 1 << 25
)

// ImageOptions are the target of image preprocessing and the bounds of
// ReadImageFolder. Zero values mean the documented defaults.
type ImageOptions struct {
	// Width, Height and Channels are the shape every image is converted
	// to: Channels 1 (gray) or 3 (RGB); default 28, 28, 1.
	Width, Height, Channels int
	// Classes fixes the class names and their order, so every agent
	// numbers them alike even when one host lacks a class. Nil means the
	// sorted names of root's folders. A folder not named here is an error.
	Classes []string
	// MaxImages bounds the number of image files (default DefaultMaxImages).
	MaxImages int
	// MaxPixels bounds the width × height an image may declare (default
	// DefaultMaxImagePixels).
	MaxPixels int
	// Workers decode images in parallel (default GOMAXPROCS). The result
	// does not depend on it.
	Workers int
}

func (o ImageOptions) withDefaults() ImageOptions {
	if o.Width == 0 {
		o.Width = DefaultImageWidth
	}
	if o.Height == 0 {
		o.Height = DefaultImageHeight
	}
	if o.Channels == 0 {
		o.Channels = DefaultImageChannels
	}
	if o.MaxImages == 0 {
		o.MaxImages = DefaultMaxImages
	}
	if o.MaxPixels == 0 {
		o.MaxPixels = DefaultMaxImagePixels
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return o
}

// Shape returns the shape of one preprocessed image, channels first:
// [Channels, Height, Width] (defaults applied), as tensor.Spec.Input
// declares image inputs.
func (o ImageOptions) Shape() []int {
	o = o.withDefaults()
	return []int{o.Channels, o.Height, o.Width}
}

// Validate reports options that cannot work: channels other than 1 or 3,
// a negative or too large size or bound, repeated or empty class names.
func (o ImageOptions) Validate() error {
	d := o.withDefaults()
	switch {
	case d.Channels != 1 && d.Channels != 3:
		return fmt.Errorf("data.ImageOptions: channels %d is not 1 (gray) or 3 (RGB): %w", o.Channels, ErrFormat)
	case d.Width < 0 || d.Height < 0 || d.MaxImages < 0 || d.MaxPixels < 0:
		return fmt.Errorf("data.ImageOptions: negative size or bound: %w", ErrFormat)
	case d.Width > tensor.MaxActivation/d.Height/d.Channels:
		return fmt.Errorf("data.ImageOptions: %d×%d×%d values exceed %d: %w", d.Width, d.Height, d.Channels, tensor.MaxActivation, ErrLimit)
	}
	seen := make(map[string]bool, len(o.Classes))
	for _, c := range o.Classes {
		if c == "" || seen[c] {
			return fmt.Errorf("data.ImageOptions: class %q is empty or repeated: %w", c, ErrFormat)
		}
		seen[c] = true
	}
	return nil
}

// imageExts are the file name endings ReadImageFolder reads (any case).
var imageExts = []string{".png", ".jpg", ".jpeg"}

// ReadImageFolder reads a folder-per-class image dataset:
// root/<class>/<file>.png|.jpg|.jpeg, files in sub-folders of a class
// folder included. Names starting with "." are skipped, and so are files
// with other endings and files directly in root. Each image is decoded by
// its content (PNG or JPEG, whatever its name says) and preprocessed by
// DecodeImage; the examples come in class order, then path order, with
// Shape opts.Shape() and Classes the number of class names.
//
// It returns the class names: opts.Classes, or the sorted folder names.
// Any file that does not decode, any folder not among opts.Classes, more
// than MaxImages files or an image larger than MaxPixels is an error
// naming the file or folder; nothing is returned half-loaded.
func ReadImageFolder(root string, opts ImageOptions) (*tensor.Dataset, []string, error) {
	if err := opts.Validate(); err != nil {
		return nil, nil, fmt.Errorf("data.ReadImageFolder: %w", err)
	}
	o := opts.withDefaults()
	classes, files, err := listImageFolder(root, o)
	if err != nil {
		return nil, nil, fmt.Errorf("data.ReadImageFolder: %w", err)
	}
	f := o.Channels * o.Height * o.Width
	ds := &tensor.Dataset{
		X: make([]float32, len(files)*f), Y: make([]int32, len(files)),
		Shape: o.Shape(), Classes: len(classes),
	}
	for i, fl := range files {
		ds.Y[i] = fl.class
	}
	errs := make([]error, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(o.Workers, len(files)) {
		wg.Go(func() {
			var p imagePrep
			for i := range next {
				errs[i] = p.decodeFile(ds.X[i*f:(i+1)*f], files[i].path, o)
			}
		})
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	// The first failing file in dataset order, whatever order the
	// workers met them in.
	if i := slices.IndexFunc(errs, func(e error) bool { return e != nil }); i >= 0 {
		return nil, nil, fmt.Errorf("data.ReadImageFolder: %w", errs[i])
	}
	return ds, classes, nil
}

type imageFile struct {
	path  string
	class int32
}

// listImageFolder finds the class folders and image files under root.
func listImageFolder(root string, o ImageOptions) ([]string, []imageFile, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, nil, err
	}
	var dirs []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if e.IsDir() || (e.Type()&fs.ModeSymlink != 0 && isDir(filepath.Join(root, e.Name()))) {
			dirs = append(dirs, e.Name())
		}
	}
	classes := o.Classes
	if classes == nil {
		classes = dirs // os.ReadDir sorts by name
	}
	if len(classes) == 0 {
		return nil, nil, fmt.Errorf("%s holds no class folders (root/<class>/<image>): %w", root, ErrFormat)
	}
	index := make(map[string]int32, len(classes))
	for i, c := range classes {
		index[c] = int32(i)
	}
	var files []imageFile
	for _, d := range dirs {
		class, ok := index[d]
		if !ok {
			return nil, nil, fmt.Errorf("folder %s is not one of the %d classes %q: %w", filepath.Join(root, d), len(classes), classes, ErrMismatch)
		}
		// The separator makes WalkDir follow a class folder that is a
		// symbolic link.
		err := filepath.WalkDir(filepath.Join(root, d)+string(filepath.Separator), func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if strings.HasPrefix(e.Name(), ".") && e.IsDir() {
				return filepath.SkipDir
			}
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !slices.Contains(imageExts, strings.ToLower(filepath.Ext(path))) {
				return nil
			}
			if len(files) == o.MaxImages {
				return fmt.Errorf("%s: more than %d image files: %w", root, o.MaxImages, ErrLimit)
			}
			files = append(files, imageFile{path: path, class: class})
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("%s holds no .png, .jpg or .jpeg files in its class folders: %w", root, ErrFormat)
	}
	// Class order, then path order: classes may be fixed in another
	// order than the folders'.
	slices.SortStableFunc(files, func(a, b imageFile) int { return int(a.class) - int(b.class) })
	return classes, files, nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// DecodeImage decodes one PNG or JPEG image (told apart by content) from r
// and appends it to dst preprocessed: converted to opts.Channels (gray is
// the Rec. 601 luma of Go's color.GrayModel; transparent pixels are
// composited on black), resized to opts.Width × opts.Height with the
// Catmull-Rom filter of golang.org/x/image/draw (stretched, no crop;
// images already of that size are copied, not filtered), scaled from
// [0, 255] to [0, 1] and laid out channels first ([C, H, W]). The
// header's width × height is checked against opts.MaxPixels before any
// pixel is decoded. Agents use it both to load an image folder and to
// serve an uploaded image, so both see the same values.
func DecodeImage(dst []float32, r io.Reader, opts ImageOptions) ([]float32, error) {
	if err := opts.Validate(); err != nil {
		return dst, fmt.Errorf("data.DecodeImage: %w", err)
	}
	o := opts.withDefaults()
	n := len(dst)
	dst = slices.Grow(dst, o.Channels*o.Height*o.Width)[:n+o.Channels*o.Height*o.Width]
	var p imagePrep
	if err := p.decode(dst[n:], r, o); err != nil {
		return dst[:n], fmt.Errorf("data.DecodeImage: %w", err)
	}
	return dst, nil
}

// imagePrep holds one worker's scratch state, reused across images: the
// target-sized result, a converted source, the last scaler.
type imagePrep struct {
	rgba, src  *image.RGBA
	br         *bufio.Reader
	scaler     draw.Scaler // to the target size from scalerFrom
	scalerFrom [2]int
}

// reuseRGBA returns m if it is w×h, else a new w×h image. A buffer that
// is large enough is reused, however its shape differs.
func reuseRGBA(m *image.RGBA, w, h int) *image.RGBA {
	if m != nil && m.Rect.Dx() == w && m.Rect.Dy() == h {
		return m
	}
	if m != nil && cap(m.Pix) >= 4*w*h && cap(m.Pix) <= 16*w*h {
		return &image.RGBA{Pix: m.Pix[:4*w*h], Stride: 4 * w, Rect: image.Rect(0, 0, w, h)}
	}
	return image.NewRGBA(image.Rect(0, 0, w, h))
}

func (p *imagePrep) decodeFile(dst []float32, path string, o ImageOptions) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := p.decode(dst, f, o); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

var (
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
	jpegMagic = []byte("\xff\xd8\xff")
)

// decode fills dst (Channels × Height × Width values) from the image r
// holds. o has its defaults applied.
func (p *imagePrep) decode(dst []float32, r io.Reader, o ImageOptions) error {
	// The header is read twice (bounds first, then pixels): keep the
	// bytes read for the first pass and replay them.
	er := &errReader{r: r}
	if p.br == nil {
		p.br = bufio.NewReaderSize(er, 64<<10)
	} else {
		p.br.Reset(er)
	}
	var head bytes.Buffer
	tee := io.TeeReader(p.br, &head)
	magic, _ := p.br.Peek(len(pngMagic))
	if er.err != nil {
		return er.err
	}
	var decodeConfig func(io.Reader) (image.Config, error)
	var decode func(io.Reader) (image.Image, error)
	switch {
	case bytes.HasPrefix(magic, pngMagic):
		decodeConfig, decode = png.DecodeConfig, png.Decode
	case bytes.HasPrefix(magic, jpegMagic):
		decodeConfig, decode = jpeg.DecodeConfig, jpeg.Decode
	default:
		return fmt.Errorf("not a PNG or JPEG image: %w", ErrFormat)
	}
	cfg, err := decodeConfig(tee)
	if err != nil {
		return imageErr(err, er)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return fmt.Errorf("image of %d×%d pixels: %w", cfg.Width, cfg.Height, ErrFormat)
	}
	if cfg.Width > o.MaxPixels/cfg.Height {
		return fmt.Errorf("image of %d×%d pixels exceeds %d pixels: %w", cfg.Width, cfg.Height, o.MaxPixels, ErrLimit)
	}
	img, err := decode(io.MultiReader(&head, p.br))
	if err != nil {
		return imageErr(err, er)
	}
	b := img.Bounds()
	if b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return fmt.Errorf("image decodes to %d×%d, its header says %d×%d: %w", b.Dx(), b.Dy(), cfg.Width, cfg.Height, ErrFormat)
	}
	p.rgba = reuseRGBA(p.rgba, o.Width, o.Height)
	if b.Dx() == o.Width && b.Dy() == o.Height {
		draw.Draw(p.rgba, p.rgba.Rect, img, b.Min, draw.Src)
	} else {
		src := img
		if _, ok := img.(*image.YCbCr); ok {
			// Filtering converts each source pixel once per tap; convert
			// a JPEG's YCbCr once instead (several times faster).
			p.src = reuseRGBA(p.src, b.Dx(), b.Dy())
			draw.Draw(p.src, p.src.Rect, img, b.Min, draw.Src)
			src, b = p.src, p.src.Rect
		}
		// A folder's images often share one size: keep the scaler, its
		// weights and its buffer for the next image.
		if key := [2]int{b.Dx(), b.Dy()}; p.scaler == nil || p.scalerFrom != key {
			p.scaler, p.scalerFrom = draw.CatmullRom.NewScaler(o.Width, o.Height, key[0], key[1]), key
		}
		p.scaler.Scale(p.rgba, p.rgba.Rect, src, b, draw.Src, nil)
	}
	rgbaToCHW(dst, p.rgba, o.Channels)
	return nil
}

// imageErr turns a decoder's error into one that wraps a sentinel too: a
// short input is ErrTruncated, anything else the decoder refuses (its
// format errors, a corrupt zlib stream) ErrFormat. The reader's own
// errors (a failing disk, a body over its limit) are returned as they are.
func imageErr(err error, r *errReader) error {
	switch {
	case r.err != nil:
		return r.err
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return fmt.Errorf("%w: %w", err, ErrTruncated)
	}
	return fmt.Errorf("%w: %w", err, ErrFormat)
}

// errReader remembers the first error of its reader other than io.EOF.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// pixelScale maps a byte to [0, 1].
var pixelScale = func() (s [256]float32) {
	for i := range s {
		s[i] = float32(i) / 255
	}
	return s
}()

// rgbaToCHW writes the premultiplied 8-bit image m as channels planes of
// [0, 1] values: 1 is the luma, 3 are R, G and B.
func rgbaToCHW(dst []float32, m *image.RGBA, channels int) {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	plane := w * h
	for y := range h {
		row := m.Pix[y*m.Stride : y*m.Stride+4*w]
		out := dst[y*w : (y+1)*w]
		if channels == 1 {
			for x := range out {
				r, g, b := uint32(row[4*x]), uint32(row[4*x+1]), uint32(row[4*x+2])
				// color.GrayModel's weights at 8 bits; they sum to 1<<16,
				// so a gray pixel stays exactly itself.
				out[x] = pixelScale[(19595*r+38470*g+7471*b+1<<15)>>16]
			}
			continue
		}
		rOut, gOut, bOut := out, dst[plane+y*w:plane+(y+1)*w], dst[2*plane+y*w:2*plane+(y+1)*w]
		for x := range rOut {
			rOut[x] = pixelScale[row[4*x]]
			gOut[x] = pixelScale[row[4*x+1]]
			bOut[x] = pixelScale[row[4*x+2]]
		}
	}
}
